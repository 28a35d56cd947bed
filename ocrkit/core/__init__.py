"""The ocrkit engine: everything commands, benchmarks and tests call."""

import cv2

# OpenCV's own thread pool does not survive fork: a DataLoader worker forked after the parent
# used OpenCV (e.g. to render the synthetic set) blocks forever on the pool's lock. Parallelism
# comes from worker processes instead; OpenCV's per-call threading buys little on our sizes.
cv2.setNumThreads(0)
