"""Raw data to decoded splits: download, extract, split, decode; the dataset sources."""
