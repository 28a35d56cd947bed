"""The store: versioned, checksummed entries of decoded images, DB maps and eval tensors."""
