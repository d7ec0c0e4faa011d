#!/usr/bin/python3
"""Baseline for the vision benchmark: the same UltraFace model run with OpenCV DNN.

Per frame, like the edge agent's detect(): decode the encoded image (cv2.imdecode), resize +
normalise + NCHW (cv2.dnn.blobFromImage: (pixel - 127) / 128, RGB), forward, then decode the
outputs (score threshold, hard NMS via cv2.dnn.NMSBoxes, boxes scaled to image pixels).
Images are read into memory before timing, as the TypeScript side does.

Run with Debian's /usr/bin/python3 (python3-opencv). Prints one JSON object on stdout.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


def percentile(values, q):
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))
    return ordered[rank]


def spread(values):
    return {"median": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def decode(scores, boxes, width, height, score_threshold, iou_threshold, max_faces):
    """UltraFace outputs -> [(x1, y1, x2, y2, score, mask_score)] in image pixels."""
    probs = scores[0]
    face = 1.0 - probs[:, 0]  # p(face) (+ p(masked_face)) = 1 - p(background)
    keep = face > score_threshold
    if not np.any(keep):
        return []
    face = face[keep]
    corners = boxes[0][keep] * np.array([width, height, width, height], dtype=np.float32)
    masked = probs[keep][:, 2] / face if probs.shape[1] > 2 else None
    order = np.argsort(-face)[:200]  # upstream's candidate_size
    rects = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in corners[order]]
    kept = cv2.dnn.NMSBoxes(rects, face[order].tolist(), score_threshold, iou_threshold, top_k=max_faces)
    out = []
    for k in np.array(kept).reshape(-1)[:max_faces]:
        i = order[k]
        x1, y1, x2, y2 = np.clip(corners[i], 0, [width, height, width, height])
        out.append((float(x1), float(y1), float(x2), float(y2), float(face[i]), None if masked is None else float(masked[i])))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--width", type=int, required=True, help="model input width")
    parser.add_argument("--height", type=int, required=True, help="model input height")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--score-threshold", type=float, default=0.7)
    parser.add_argument("--iou-threshold", type=float, default=0.3)
    parser.add_argument("--max-faces", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=1,
                        help="frames in flight: 2 decodes the next frame while the net runs (cv2 releases the GIL)")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromONNX(args.model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    size = (args.width, args.height)
    encoded = []
    for path in args.images:
        with open(path, "rb") as f:
            encoded.append(np.frombuffer(f.read(), dtype=np.uint8))

    net_lock = threading.Lock()  # one net, one forward at a time (as the TS side's input tensor)

    def detect(buf, timings=None):
        t0 = time.perf_counter()
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"OpenCV cannot decode one of the images ({len(buf)} bytes)")
        t1 = time.perf_counter()
        blob = cv2.dnn.blobFromImage(image, 1 / 128, size, (127, 127, 127), swapRB=True, crop=False)
        with net_lock:
            t2 = time.perf_counter()
            net.setInput(blob)
            scores, boxes = net.forward(["scores", "boxes"])
            t3 = time.perf_counter()
        faces = decode(scores, boxes, image.shape[1], image.shape[0], args.score_threshold, args.iou_threshold, args.max_faces)
        t4 = time.perf_counter()
        if timings is not None:
            for key, ms in zip(("decodeMs", "preprocessMs", "inferenceMs", "postprocessMs", "totalMs"),
                               (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                timings[key].append(ms * 1000)
        return faces

    for buf in encoded:  # warm-up
        detect(buf)
    timings = {k: [] for k in ("decodeMs", "preprocessMs", "inferenceMs", "postprocessMs", "totalMs")}
    frames = args.iterations * len(encoded)
    start = time.perf_counter()
    if args.in_flight == 1:
        faces = sum(len(detect(encoded[i % len(encoded)], timings)) for i in range(frames))
    else:
        with ThreadPoolExecutor(args.in_flight) as pool:
            faces = sum(len(f) for f in pool.map(lambda i: detect(encoded[i % len(encoded)], timings), range(frames)))
    wall = time.perf_counter() - start

    # bare forward on one prepared blob, as many times as there were frames
    blob = cv2.dnn.blobFromImage(cv2.imdecode(encoded[0], cv2.IMREAD_COLOR), 1 / 128, size, (127, 127, 127), swapRB=True)
    bare = []
    for _ in range(frames):
        net.setInput(blob)
        t0 = time.perf_counter()
        net.forward(["scores", "boxes"])
        bare.append((time.perf_counter() - t0) * 1000)

    json.dump({
        "engine": f"OpenCV DNN {cv2.__version__} (python {sys.version.split()[0]})",
        "threads": cv2.getNumThreads(),
        "inFlight": args.in_flight,
        "images": len(encoded),
        "frames": frames,
        "fps": frames / wall,
        "stages": {k: spread(v) for k, v in timings.items()},
        "bareInferenceMs": spread(bare),
        "facesPerFrame": faces / frames,
        "maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pid": os.getpid(),
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
