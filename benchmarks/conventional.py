"""The baseline both benchmarks measure against: torchvision's conventional per-image pipeline.

Each item is a PIL image sent through RandomCrop(32, padding=4) -> RandomHorizontalFlip ->
ToTensor -> Normalize, in a DataLoader with worker processes, as the courses this one
replaces did it.
"""
import torch
from PIL import Image


class PilDataset(torch.utils.data.Dataset):
    """torchvision.datasets-style: each item a PIL image through per-image transforms."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def conventional_loader(images, labels, mean, std, *, batch_size: int, workers: int, **kwargs):
    """A shuffling DataLoader over uint8 (N, 32, 32, 3) images with the per-image transforms."""
    import torchvision.transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(mean, std)])
    return torch.utils.data.DataLoader(PilDataset(images, labels, transform), batch_size=batch_size, shuffle=True,
                                       num_workers=workers, **kwargs)
