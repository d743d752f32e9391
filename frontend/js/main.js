/**
 * The page: renders the picture and the latest overlays on every animation frame, and sends
 * frames to the backend independently, one at a time, so rendering never waits for inference.
 */

import { BoxMotion } from "./boxmotion.js";
import { FrameCapture } from "./capture.js";
import { coldStart } from "./coldstart.js";
import { loadConfig, localEndpoint, sessionEndpoint } from "./config.js";
import { InferenceConnection, initParams } from "./connection.js";
import { ErrorCode } from "./error_codes.js";
import { drawOverlay } from "./overlay.js";
import { CurrentPicture, openCamera, openFile } from "./source.js";
import { stageErrorStatus } from "./stage_errors.js";
import { Stats } from "./stats.js";
import { Ui } from "./ui.js";

const OCR_SHOW_MS = 4000;
const STATS_REFRESH_MS = 250;
const TOKEN_MARGIN_S = 30;

const canvas = document.getElementById("view");
const context = canvas.getContext("2d");
const pictures = document.getElementById("pictures");

const config = await loadConfig().catch((error) => {
  document.getElementById("status").textContent = `configuration error: ${error.message}`;
  throw error;
});
const ui = new Ui(document, config.stages);
const stats = new Stats();
const capture = new FrameCapture(config.frameWidth, config.frameHeight, config.jpegQuality);
const motion = new BoxMotion(config.maxExtrapolationFrames);

/** What the page is doing, readable from the console and by the browser tests. */
const hook = {
  config,
  stats,
  state: "idle",
  coldStartStates: [],
  errors: [],
  summaries: [],
  lastResult: null,
  lastDrawn: null,
  /** Measurement (the overlay benchmark): when `probe` is a function it is called with the
   * canvas context after the picture is drawn and before the overlays; when `rendered` is an
   * array, every rendered frame appends `{probe, boxes, held}`: what `probe` returned, the boxes
   * drawn and the last result's boxes unmoved, both in canvas pixels `{box, trackId, label}`. */
  probe: null,
  rendered: null,
  snapshot: () => stats.snapshot(performance.now()),
};
window.cvstack = hook;

let source = null;
const picture = new CurrentPicture(showPicture);
let connection = null;
let session = null;
let encoding = false;
let ocrOnShow = null;
/** What the last result's stage errors say (`stageErrorStatus`), null while clean. */
let stageStatus = null;
/** The connection's own state and detail, shown again once results are free of errors. */
let connectionState = { state: "idle", detail: "" };
let statsShownAt = 0;

function setState(state, detail = "") {
  hook.state = state;
  ui.setStatus(state, detail);
}

async function useSource(open) {
  try {
    await picture.use(open);
  } catch (error) {
    const next = source ? "the current picture stays" : "choose a video or image file instead";
    ui.showError(`${error.message}; ${next}`);
    ui.showNoPicture(!source);
  }
}

/** A new picture source, or none (it failed): without a picture nothing is drawn, counted or sent. */
function showPicture(current, lostReason) {
  source = current;
  if (lostReason) ui.showError(`${lostReason}; choose the camera or a file again`);
  if (source) {
    canvas.width = source.width;
    canvas.height = source.height;
  } else {
    context.clearRect(0, 0, canvas.width, canvas.height);
    clearOverlays();
  }
  ui.showNoPicture(!source);
}

function render(now) {
  requestAnimationFrame(render);
  if (now - statsShownAt > STATS_REFRESH_MS) {
    statsShownAt = now;
    ui.showStats(stats.snapshot(now));
  }
  if (!source?.width) return;
  context.drawImage(source.element, 0, 0, canvas.width, canvas.height);
  const probed = typeof hook.probe === "function" ? hook.probe(context) : null;
  const result = hook.lastResult;
  let drawn = [];
  if (result) {
    const { frames, boxes } = motion.boxesAt(now);
    const ocr = ocrOnShow && now < ocrOnShow.until ? ocrOnShow.items : null;
    drawn = drawOverlay(context, { result, boxes, ocr });
    hook.lastDrawn = { result, frames, boxes: drawn };
  }
  if (Array.isArray(hook.rendered)) hook.rendered.push({ probe: probed, boxes: drawn.map(measured), held: heldBoxes(result) });
  stats.rendered(now);
  sendFrame();
}

/** A drawn box as the measurement hook reports it. */
function measured({ box, trackId, label }) {
  return { box, trackId, label };
}

/** The result's own boxes, unmoved, in canvas pixels (the baseline the live mode must beat). */
function heldBoxes(result) {
  if (!result?.yolo) return [];
  const sx = canvas.width / result.width;
  const sy = canvas.height / result.height;
  return result.yolo.boxes.map((box, i) => ({
    box: [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy],
    trackId: result.yolo.track_ids[i],
    label: result.yolo.labels[i],
  }));
}

/** Capture and send the current picture if the connection has a free slot. */
async function sendFrame() {
  if (encoding || !connection?.canSend || !source?.width) return;
  encoding = true;
  try {
    const capturedAt = performance.now();
    const jpeg = await capture.encode(source);
    if (connection?.sendFrame(jpeg, { capturedAt })) stats.framesSent += 1;
  } catch (error) {
    ui.showError(error.message);
  } finally {
    encoding = false;
  }
}

function onResult(data, { rttMs, meta }) {
  const now = performance.now();
  const status = stageErrorStatus(data.errors);
  stats.resultArrived(now, rttMs, data.dropped_frames, status !== null);
  hook.lastResult = data;
  motion.update(data.yolo, meta?.capturedAt ?? now);
  if (data.ocr?.length) ocrOnShow = { items: data.ocr, until: now + OCR_SHOW_MS };
  if (status && status.text !== stageStatus?.text) ui.showError(status.text);
  stageStatus = status;
  showStageErrors();
  sendFrame();
}

/**
 * Red "triton-down" or amber "degraded" while a running session's results carry stage errors;
 * back to the connection's own state once they are clean.
 */
function showStageErrors() {
  if (connectionState.state !== "running") return;
  if (stageStatus) setState(stageStatus.state, stageStatus.detail);
  else if (hook.state !== connectionState.state) setState(connectionState.state, connectionState.detail);
}

/** The WebSocket URL: local mode's, or after a cold start the session's with its token. */
async function endpoint(signal) {
  if (!config.startApiUrl) return localEndpoint(config);
  if (!session || session.expiresAt - TOKEN_MARGIN_S < Date.now() / 1000) {
    const began = performance.now();
    let progress = "requested";
    const show = () => setState("starting", `${progress} (${((performance.now() - began) / 1000).toFixed(0)} s)`);
    const ticker = setInterval(show, 500);
    try {
      session = await coldStart(config.startApiUrl, {
        apiKey: config.apiKey,
        pollMs: config.statusPollMs,
        timeoutS: config.coldStartTimeoutS,
        signal,
        onProgress: (state, detail) => {
          hook.coldStartStates.push(state);
          progress = `${state}, ${detail}`;
          show();
        },
      });
    } finally {
      clearInterval(ticker);
    }
  }
  const url = new URL(sessionEndpoint(config, session.endpoint));
  url.searchParams.set("token", session.token);
  return url.href;
}

function start() {
  if (connection) return;
  ui.setActive(true);
  connection = new InferenceConnection({
    endpoint,
    params: initParams(ui.stageValues()),
    backoff: { minMs: config.reconnectMinMs, maxMs: config.reconnectMaxMs, probeMs: config.reconnectProbeMs },
    resultTimeoutMs: config.resultTimeoutMs,
    on: {
      state: (state, detail) => {
        connectionState = { state, detail };
        if (state !== "running") stageStatus = null;
        setState(state, detail);
        showStageErrors();
        if (["waiting", "running", "finished"].includes(state)) ui.showQueue(`${state}, ${detail}`);
        if (state === "reconnecting") clearOverlays();
        if (state === "failed") {
          ui.showError(detail);
          connection = null;
          ui.setActive(false);
        }
      },
      result: onResult,
      error: ({ code, message }) => {
        hook.errors.push(code);
        ui.showError(`${code}: ${message}`);
        if (code === ErrorCode.TOKEN_EXPIRED) session = null;
      },
      summary: (text) => {
        hook.summaries.push(text);
        ui.showSummary(text);
      },
      lost: (count) => {
        stats.lostFrames += count;
      },
      connectFailed: () => {
        session = null;
      },
      reconnected: () => {
        stats.reconnects += 1;
      },
    },
  });
  connection.open();
}

/** Results of a closed connection are stale: stop drawing them. */
function clearOverlays() {
  hook.lastResult = null;
  hook.lastDrawn = null;
  motion.clear();
}

function stop() {
  connection?.close();
  connection = null;
  clearOverlays();
  ui.setActive(false);
}

ui.bind({
  start,
  stop,
  ocr: () => connection?.requestOcr(),
  retry: () => connection?.retryNow(),
  stages: (stages) => {
    connection?.setParams(initParams(stages));
    if (!stages.detection) motion.clear();
  },
  camera: () => useSource(() => openCamera(pictures)),
  file: (file) => useSource(() => openFile(file, pictures)),
});
setState("idle");
requestAnimationFrame(render);
await useSource(() => openCamera(pictures));
if (config.autoStart) start();
