"""Benchmark the edge's per-frame work against the bare OpenCV calls it wraps.

Reproduce: python -m tools.bench_edge [--repeats 50] [--seconds 10]

(a) GlobalEncoder.encode vs cv2.resize (+ border / slice) + cv2.imencode, per preprocess mode;
(b) crop_roi vs slice + cv2.resize + border + cv2.imencode; (c) FrameBuffer memory held while a
simulated 30 fps 1080p stream is put into it. Times are medians per call, the wrapper and the
bare calls timed alternately; the wrapper/bare ratio target is <= 1.3.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
import statistics
import time
import tracemalloc

import cv2
import numpy as np

from colvlm_edge.frame_buffer import FrameBuffer
from colvlm_edge.global_encoder import CLIP_MEAN_BGR, GlobalEncoder, GlobalEncoderConfig
from colvlm_edge.roi_crop import CropLimits, crop_roi
from colvlm_msgs.geometry import GlobalGeometry

RATIO_TARGET = 1.3
JPEG_QUALITY = 85


def textured_frame(height: int = 1080, width: int = 1920, seed: int = 0) -> np.ndarray:
    """Gradients, shapes, text and sensor noise: compresses roughly like a camera frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width * 200 + 30, y / height * 180 + 40,
                      np.sin(x / 37.0) * np.cos(y / 23.0) * 60 + 120], -1)
    for _ in range(60):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(float(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, center, int(rng.integers(10, 160)), color, -1)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for row in range(16):
        cv2.putText(image, 'EXIT 12  colvlm  speed 40', (30 + row * 7, 60 + row * 64),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.2, (250, 250, 250), 2)
    noisy = image + rng.normal(0, 5, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)  # (H, W, 3) uint8 BGR


def median_ms(function: Callable[[], object], repeats: int) -> float:
    for _ in range(3):  # warm caches and OpenCV's thread pool
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def compare_ms(ours: Callable[[], object], bare: Callable[[], object],
               repeats: int) -> tuple[float, float]:
    """Median ms of each, timed alternately so that load from other processes hits both."""
    samples: tuple[list[float], list[float]] = ([], [])
    for index in range(repeats + 3):
        for function, times in ((ours, samples[0]), (bare, samples[1])):
            start = time.perf_counter()
            function()
            if index >= 3:  # the first calls warm caches and OpenCV's thread pool
                times.append(time.perf_counter() - start)
    return statistics.median(samples[0]) * 1e3, statistics.median(samples[1]) * 1e3


def bare_global(image: np.ndarray, geometry: GlobalGeometry) -> bytes:
    """The same pixels GlobalEncoder makes, by direct OpenCV calls."""
    resized_width, resized_height = geometry.resized_size
    resized = cv2.resize(image, (resized_width, resized_height), interpolation=cv2.INTER_AREA)
    offset_x, offset_y = int(geometry.offset_x), int(geometry.offset_y)
    if geometry.preprocess == 'pad':
        resized = cv2.copyMakeBorder(
            resized, offset_y, geometry.global_height - resized_height - offset_y, offset_x,
            geometry.global_width - resized_width - offset_x, cv2.BORDER_CONSTANT,
            value=CLIP_MEAN_BGR)
    elif geometry.preprocess == 'center_crop':
        resized = resized[-offset_y:-offset_y + geometry.global_height,
                          -offset_x:-offset_x + geometry.global_width]
    ok, buffer = cv2.imencode('.jpg', resized, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return buffer.tobytes()


def bench_global(image: np.ndarray, repeats: int) -> list[float]:
    print('(a) global frame 1920x1080 -> 336x336 jpeg q85, median ms per frame')
    ratios = []
    for preprocess in ('pad', 'center_crop', 'resize'):
        config = GlobalEncoderConfig(width=336, height=336, preprocess=preprocess, codec='jpeg',
                                     quality=JPEG_QUALITY)
        encoder = GlobalEncoder(config)
        geometry = encoder.geometry_for(image.shape[1], image.shape[0])
        ours, bare = compare_ms(partial(encoder.encode, image),
                                partial(bare_global, image, geometry), repeats)
        ratios.append(ours / bare)
        size = len(encoder.encode(image).data)
        print(f'    {preprocess:<12} GlobalEncoder {ours:6.2f}   bare cv2 {bare:6.2f}   '
              f'ratio {ours / bare:4.2f}   {size} bytes')
    budget = GlobalEncoder(GlobalEncoderConfig(width=336, height=336, byte_budget=20_000))
    result = budget.encode(image)
    ms = median_ms(lambda: budget.encode(image), max(5, repeats // 5))
    print(f'    byte budget 20000 (binary search, info only): {ms:6.2f} ms, picked quality '
          f'{result.quality}, {len(result.data)} bytes')
    return ratios


def bare_crop(image: np.ndarray, box: tuple[int, int, int, int],
              output: tuple[int, int]) -> bytes:
    x, y, w, h = box
    geometry = GlobalGeometry.fit(w, h, output[0], output[1], 'pad')
    return bare_global(image[y:y + h, x:x + w], geometry)


def bench_crop(image: np.ndarray, repeats: int) -> list[float]:
    print('(b) RoI crop + encode (jpeg q85), median ms per request')
    limits = CropLimits(default_quality=JPEG_QUALITY)
    ratios = []
    for box, output in (((700, 400, 480, 270), (336, 336)), ((100, 100, 1200, 800), (672, 672))):
        ours, bare = compare_ms(partial(crop_roi, image, box, output_size=output, limits=limits),
                                partial(bare_crop, image, box, output), repeats)
        ratios.append(ours / bare)
        print(f'    roi {box} -> {output[0]}x{output[1]}   crop_roi {ours:6.2f}   '
              f'bare cv2 {bare:6.2f}   ratio {ours / bare:4.2f}')
    return ratios


def bench_buffer(image: np.ndarray, seconds: float) -> None:
    max_frames, max_bytes = 90, 200 * 1024 * 1024
    print(f'(c) FrameBuffer(max_frames={max_frames}, max_bytes={max_bytes}) under a simulated '
          f'30 fps 1080p stream for {seconds:g} s (frames put back to back, not paced)')
    buffer = FrameBuffer(max_frames, max_bytes)
    frames = int(seconds * 30)
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    peak_held = 0
    for index in range(frames):
        # A fresh array per frame, as a camera driver hands out.
        buffer.put(index * 33_333_333, image.copy())
        peak_held = max(peak_held, buffer.bytes)
    traced_peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    print(f'    frames put {frames}, held {buffer.frames}, evictions {buffer.evictions}')
    print(f"    peak bytes held (the buffer's own count): {peak_held} "
          f'= {peak_held / max_bytes:.3f} of max_bytes')
    print(f'    peak traced allocation (tracemalloc, includes the incoming frame): '
          f'{traced_peak} = {traced_peak / max_bytes:.3f} of max_bytes')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=50, help='timed calls per measurement')
    parser.add_argument('--seconds', type=float, default=10.0,
                        help='simulated stream length for the buffer test')
    args = parser.parse_args()
    print('reproduce: python -m tools.bench_edge '
          f'--repeats {args.repeats} --seconds {args.seconds:g}')
    print(f'opencv {cv2.__version__}, numpy {np.__version__}, '
          f'cv2 threads {cv2.getNumThreads()}')
    image = textured_frame()
    ratios = bench_global(image, args.repeats) + bench_crop(image, args.repeats)
    bench_buffer(image, args.seconds)
    worst = max(ratios)
    verdict = 'within' if worst <= RATIO_TARGET else 'ABOVE'
    print(f'worst wrapper/bare ratio {worst:.2f}: {verdict} the {RATIO_TARGET} target')


if __name__ == '__main__':
    main()
