"""Datasets: locating sources, the prepare stage, device-resident batches, augmentations."""
