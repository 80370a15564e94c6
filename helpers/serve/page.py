"""GET /: one self-contained page (no CDN, no network beyond this server): upload or drop images,
see the top-5 probabilities as bars and the Grad-CAM heat map. Text from the server is inserted
with textContent only, so a file name cannot inject markup."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CIFAR classifier</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.5rem; margin-bottom: .25rem; }
  #model { color: #555; margin-top: 0; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem 1rem; text-align: center; cursor: pointer; }
  #drop.over { background: #eef4ff; border-color: #2f5fc4; }
  .options { margin: .75rem 0; }
  .error { color: #b00020; }
  .result { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; margin: 1.5rem 0;
            padding-top: 1rem; border-top: 1px solid #ddd; }
  .pics { display: flex; gap: .75rem; }
  .pics figure { margin: 0; width: 160px; }
  .pics img { width: 160px; height: 160px; object-fit: cover; border: 1px solid #ccc; display: block; }
  .pics figcaption { font-size: .8rem; color: #555; overflow-wrap: anywhere; }
  .bars { flex: 1; min-width: 16rem; }
  .bar-row { display: grid; grid-template-columns: 7.5rem 1fr 3.5rem; gap: .5rem; align-items: center;
             margin: .3rem 0; }
  .track { background: #eee; height: 1rem; border-radius: 3px; overflow: hidden; }
  .fill { background: #2f5fc4; height: 100%; }
  .pct { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>CIFAR classifier</h1>
<p id="model">loading the model's description&hellip;</p>
<div id="drop" tabindex="0" role="button" aria-label="choose or drop images">
  Drop images here, or click to choose them
</div>
<div class="options">
  <input id="file" type="file" accept="image/*" multiple>
  <label><input id="cam" type="checkbox" checked> show the Grad-CAM heat map</label>
</div>
<p id="status" role="status"></p>
<div id="results"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const percent = (p) => (100 * p).toFixed(1) + "%";

fetch("/model").then((r) => r.json()).then((m) => {
  let text = m.name + " \\u00b7 " + m.num_classes + " classes \\u00b7 " +
             Number(m.parameters).toLocaleString() + " parameters \\u00b7 temperature " + m.temperature.toFixed(3);
  if (m.accuracy !== null) text += " \\u00b7 recorded accuracy " + percent(m.accuracy);
  $("model").textContent = text;
}).catch(() => { $("model").textContent = "the model's description is unavailable"; });

function figure(src, caption, cls) {
  const f = el("figure");
  const img = el("img", cls);
  img.src = src;
  img.alt = caption;
  f.append(img, el("figcaption", null, caption));
  return f;
}

function show(result, file) {
  const card = el("div", "result");
  const pics = el("div", "pics");
  pics.append(figure(URL.createObjectURL(file), result.file, "upload"));
  if (result.gradcam_png) {
    pics.append(figure("data:image/png;base64," + result.gradcam_png, "Grad-CAM: where the model looked", "heatmap"));
  } else if (result.gradcam_note) {
    pics.append(el("p", "note", result.gradcam_note));
  }
  const bars = el("div", "bars");
  for (const t of result.top5) {
    const row = el("div", "bar-row");
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = percent(t.probability);
    track.append(fill);
    row.append(el("span", "name", t.class), track, el("span", "pct", percent(t.probability)));
    bars.append(row);
  }
  card.append(pics, bars);
  $("results").append(card);
}

async function send(files) {
  files = Array.from(files);
  if (!files.length) return;
  const body = new FormData();
  for (const f of files) body.append("files", f, f.name);
  $("results").replaceChildren();
  $("status").className = "";
  $("status").textContent = "classifying " + files.length + " image" + (files.length > 1 ? "s" : "") + "\\u2026";
  try {
    const r = await fetch("/predict?gradcam=" + ($("cam").checked ? "1" : "0"), { method: "POST", body });
    const data = await r.json().catch(() => ({ detail: r.statusText }));
    if (!r.ok) throw new Error(data.detail || ("HTTP " + r.status));
    $("status").textContent = "";
    data.results.forEach((result, i) => show(result, files[i]));
  } catch (e) {
    $("status").className = "error";
    $("status").textContent = e.message;
  }
}

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  send(e.dataTransfer.files);
});
$("file").addEventListener("change", (e) => { send(e.target.files); e.target.value = ""; });
</script>
</body>
</html>
"""
