/**
 * YOLO output decoding in the page, as the backend does it (backend/pipeline/yolo_decode.py,
 * backend/pipeline/letterbox.py): the letterbox placement of a frame in the square input, and
 * detections from a `yolo_raw` (`[4 + classes, anchors]`, class-aware NMS here) or
 * `yolo_end2end` (`[detections, 6]`) output, in original-frame pixels, best score first.
 */

/** Values before the class scores in a raw column, and per row of an end-to-end output. */
const BOX_VALUES = 4;
const END2END_VALUES = 6;

/**
 * How a `width` x `height` frame sits in a `size` square input: `input = frame * scale + pad`.
 * @returns {{scale: number, padX: number, padY: number, newW: number, newH: number, size: number, width: number, height: number}}
 */
export function letterboxPlacement(width, height, size) {
  const scale = Math.min(size / width, size / height);
  const newW = Math.max(1, Math.round(width * scale));
  const newH = Math.max(1, Math.round(height * scale));
  // ultralytics puts an odd padding pixel last.
  const padX = Math.round((size - newW) / 2 - 0.1);
  const padY = Math.round((size - newH) / 2 - 0.1);
  return { scale, padX, padY, newW, newH, size, width, height };
}

/**
 * Detections above `confThreshold` from one image's output (no batch axis).
 * @param {Float32Array} values  the output, row-major
 * @param {number[]} dims  its shape without the batch axis: [channels, anchors] or [rows, 6]
 * @param {object} options
 * @param {"yolo_raw" | "yolo_end2end"} options.outputFormat
 * @param {number} options.numClasses
 * @param {ReturnType<typeof letterboxPlacement>} options.letterbox
 * @param {number} [options.confThreshold]
 * @param {number} [options.iouThreshold]
 * @param {number} [options.maxDetections]
 * @returns {{boxes: number[][], scores: number[], classes: number[]}}
 * @throws {Error} when the shape does not match the format and class count
 */
export function decodeYolo(values, dims, { outputFormat, numClasses, letterbox, confThreshold = 0.25, iouThreshold = 0.45, maxDetections = 100 }) {
  let rows;
  if (outputFormat === "yolo_raw") {
    checkShape(dims, 0, BOX_VALUES + numClasses, outputFormat);
    rows = rawRows(values, dims[1], numClasses, confThreshold, iouThreshold, maxDetections);
  } else if (outputFormat === "yolo_end2end") {
    checkShape(dims, 1, END2END_VALUES, outputFormat);
    rows = end2endRows(values, dims[0], dims[1], numClasses, confThreshold, maxDetections);
  } else {
    throw new Error(`'${outputFormat}' is not a YOLO output format`);
  }
  return {
    boxes: rows.map((row) => toOriginal(row.box, letterbox)),
    scores: rows.map((row) => row.score),
    classes: rows.map((row) => row.cls),
  };
}

function checkShape(dims, axis, expected, outputFormat) {
  if (dims.length !== 2 || dims[axis] !== expected) {
    throw new Error(`${outputFormat} output has shape [${dims}], expected ${expected} values on axis ${axis}`);
  }
}

function rawRows(values, anchors, numClasses, confThreshold, iouThreshold, maxDetections) {
  const candidates = [];
  for (let a = 0; a < anchors; a += 1) {
    let best = -Infinity;
    let cls = 0;
    for (let c = 0; c < numClasses; c += 1) {
      const score = values[(BOX_VALUES + c) * anchors + a];
      if (score > best) {
        best = score;
        cls = c;
      }
    }
    if (!(best > confThreshold)) continue;
    const [cx, cy, w, h] = [0, 1, 2, 3].map((k) => values[k * anchors + a]);
    candidates.push({ box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score: best, cls });
  }
  return nms(candidates, iouThreshold, maxDetections);
}

function end2endRows(values, count, width, numClasses, confThreshold, maxDetections) {
  const rows = [];
  for (let r = 0; r < count; r += 1) {
    const row = values.subarray(r * width, (r + 1) * width);
    if (!(row[4] > confThreshold)) continue;
    const cls = Math.trunc(row[5]);
    if (cls < 0 || cls >= numClasses) throw new Error(`yolo_end2end output has class index ${cls} outside 0..${numClasses - 1}`);
    rows.push({ box: [row[0], row[1], row[2], row[3]], score: row[4], cls });
  }
  return stableByScore(rows).slice(0, maxDetections);
}

/** Greedy class-aware NMS, best score first (equal scores keep their order). */
export function nms(candidates, iouThreshold, maxDetections) {
  const kept = [];
  for (const candidate of stableByScore(candidates)) {
    if (kept.length >= maxDetections) break;
    if (kept.every((other) => other.cls !== candidate.cls || iou(other.box, candidate.box) <= iouThreshold)) kept.push(candidate);
  }
  return kept;
}

function stableByScore(rows) {
  return rows.map((row, index) => ({ row, index })).sort((a, b) => b.row.score - a.row.score || a.index - b.index).map(({ row }) => row);
}

function iou(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 1;
}

/** An input-pixel box in original-frame pixels, clipped to the frame. */
function toOriginal(box, { scale, padX, padY, width, height }) {
  const clip = (value, limit) => Math.min(Math.max(value, 0), limit);
  return [
    clip((box[0] - padX) / scale, width),
    clip((box[1] - padY) / scale, height),
    clip((box[2] - padX) / scale, width),
    clip((box[3] - padY) / scale, height),
  ];
}
