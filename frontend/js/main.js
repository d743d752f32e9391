/**
 * The page: renders a picture and its overlays on every animation frame, and sends frames to
 * the backend independently, one at a time, so rendering never waits for inference. In the
 * synchronised display mode the picture is a recorded one, shown as late as its overlays need;
 * in the live mode it is the current one, with the last result's boxes moved on.
 */

import { BoxMotion } from "./boxmotion.js";
import { FrameCapture } from "./capture.js";
import { coldStart } from "./coldstart.js";
import { checkDisplayMode, loadConfig, localEndpoint, sessionEndpoint } from "./config.js";
import { BootCountdown } from "./countdown.js";
import { InferenceConnection, initParams } from "./connection.js";
import { DisplayDelay } from "./display_delay.js";
import { ErrorCode } from "./error_codes.js";
import { FrameRecorder } from "./frame_recorder.js";
import { LocalDetection, startLoading } from "./handover.js";
import { showModels } from "./models_info.js";
import { drawOverlay } from "./overlay.js";
import { preStart } from "./prestart.js";
import { ResultTimeline } from "./result_timeline.js";
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
const recorder = new FrameRecorder();
const timeline = new ResultTimeline();
const delay = new DisplayDelay();

/** What the page is doing, readable from the console and by the browser tests. */
const hook = {
  config,
  stats,
  state: "idle",
  coldStartStates: [],
  errors: [],
  summaries: [],
  lastResult: null,
  models: null,
  /** The last rendered frame's overlays: `{result, frames, boxes, pictureAt, resultAt}`. */
  lastDrawn: null,
  /** "sync" or "live"; change it with `setDisplayMode` (or the page's control). */
  displayMode: config.displayMode,
  /** How far behind the camera the picture is shown now (0 in live mode). */
  displayDelayMs: 0,
  /** Measurement (the overlay benchmark): when `probe` is a function it is called with the
   * canvas context after the picture is drawn and before the overlays; when `rendered` is an
   * array, every rendered frame appends `{probe, boxes, held, pictureAt, resultAt,
   * resultFrameIdx}`: what `probe` returned, the boxes drawn, and the boxes unmoved of the newest
   * result whose frame is at or before the picture shown, both in canvas pixels `{box, trackId,
   * label}`; the capture times (performance.now()) of the picture shown and of that result's
   * frame, and that result's `frame_idx` (null: no such result). */
  probe: null,
  rendered: null,
  /** Where the overlays drawn now come from: "device" (the in-browser detector while the GPU
   * boots), "server", or null; `local` is the in-browser detector's `{state, provider, error, marks}`,
   * `startedAt` when Start was pressed and `firstDrawnAt` when each first drew (performance.now()). */
  runsOn: null,
  local: null,
  startedAt: null,
  firstDrawnAt: { device: null, server: null },
  setDisplayMode,
  snapshot: () => ({ ...stats.snapshot(performance.now()), displayMode: hook.displayMode, displayDelayMs: hook.displayDelayMs }),
};
window.cvstack = hook;

let source = null;
const currentPicture = new CurrentPicture(showPicture);
let connection = null;
/** The in-browser detector during a cold start, until the server's first result is drawn. */
let local = null;
/** A page that cold-starts loads that detector as it opens, for the first Start (and runs it
 * once if Start has not come yet); later Starts load it again (the hand-over frees it). */
let preloaded = config.startApiUrl ? startLoading({ warmUp: () => local === null }) : null;
let session = null;
let encoding = false;
let ocrOnShow = null;
let lastSentFrameId = 0;
/** Capture time of the last result's frame. */
let lastResultAt = 0;
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
    await currentPicture.use(open);
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
  restartDisplay();
}

/**
 * Choose how overlays meet the video ("sync" or "live").
 * @param {string} mode
 */
function setDisplayMode(mode) {
  hook.displayMode = checkDisplayMode(mode);
  ui.showDisplayMode(hook.displayMode);
  restartDisplay();
}

/** Start the display over: record pictures afresh (sync mode, a video) at no delay. */
function restartDisplay() {
  recorder.start(hook.displayMode === "sync" ? source?.element : null);
  delay.clear();
  hook.displayDelayMs = 0;
}

function render(now) {
  requestAnimationFrame(render);
  if (now - statsShownAt > STATS_REFRESH_MS) {
    statsShownAt = now;
    ui.showStats(hook.snapshot());
  }
  if (!source?.width) return;
  const picture = pickPicture(now);
  context.drawImage(picture.element, 0, 0, canvas.width, canvas.height);
  const probed = typeof hook.probe === "function" ? hook.probe(context) : null;
  const server = pickOverlays(picture, now);
  const scene = server ?? local?.scene() ?? null;
  const drawn = scene ? drawOverlay(context, { result: scene.result, boxes: scene.boxes, ocr: ocrAt(picture.capturedAt) }) : [];
  hook.lastDrawn = scene && { result: scene.result, frames: scene.frames, boxes: drawn, pictureAt: picture.capturedAt, resultAt: scene.heldAt };
  if (Array.isArray(hook.rendered)) {
    hook.rendered.push({
      probe: probed,
      boxes: drawn.map(measured),
      held: heldBoxes(scene?.held),
      pictureAt: picture.capturedAt,
      resultAt: scene?.heldAt ?? null,
      resultFrameIdx: scene?.held.frame_idx ?? null,
      runsOn: scene ? (server ? "server" : "device") : null,
      renderedAt: performance.now(),
    });
  }
  if (scene) showRunsOn(server ? "server" : "device");
  stats.rendered(now);
  sendFrame();
}

/**
 * The picture to show at `now`: in sync mode the recorded one `displayDelayMs` old, else the
 * source's current one.
 * @returns {{element: CanvasImageSource, capturedAt: number}}
 */
function pickPicture(now) {
  recorder.poll(now);
  if (recorder.recording) {
    hook.displayDelayMs = delay.at(now);
    const frame = recorder.history.at(now - hook.displayDelayMs);
    if (frame) return { element: frame.picture.element, capturedAt: frame.capturedAt };
  }
  return { element: source.element, capturedAt: now };
}

/**
 * The overlays for `picture`: in sync mode its own result, or the results around it
 * interpolated; in live mode the last result with its boxes moved on.
 * @returns {{result: object, boxes: number[][], frames: number, held: object, heldAt: number} | null}
 */
function pickOverlays(picture, now) {
  if (hook.displayMode === "sync") {
    const scene = timeline.sceneAt(picture.capturedAt);
    return scene && { ...scene, boxes: scene.result.yolo?.boxes ?? [], frames: 0 };
  }
  const result = hook.lastResult;
  if (!result) return null;
  const { frames, boxes } = motion.boxesAt(now);
  return { result, boxes, frames, held: result, heldAt: lastResultAt };
}

/** The OCR text on show for a picture captured at `time`. */
function ocrAt(time) {
  return ocrOnShow && ocrOnShow.from <= time && time < ocrOnShow.until ? ocrOnShow.items : null;
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

/** Send the newest picture (in sync mode the newest recorded) if the connection has a free slot. */
async function sendFrame() {
  if (encoding || !connection?.canSend || !source?.width) return;
  const frame = recorder.history.newest();
  if (recorder.recording && (!frame || frame.id === lastSentFrameId)) return;
  encoding = true;
  try {
    const picture = recorder.recording ? frame.picture : source;
    const meta = recorder.recording ? { capturedAt: frame.capturedAt, frameId: frame.id } : { capturedAt: performance.now() };
    const jpeg = await capture.encode(picture);
    if (connection?.sendFrame(jpeg, meta)) {
      stats.framesSent += 1;
      lastSentFrameId = meta.frameId ?? 0;
    }
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
  lastResultAt = meta?.capturedAt ?? now;
  motion.update(data.yolo, lastResultAt);
  if (meta) {
    timeline.add(meta.capturedAt, data);
    delay.resultArrived(meta.capturedAt, now);
  }
  if (data.ocr?.length) ocrOnShow = { items: data.ocr, from: lastResultAt, until: lastResultAt + OCR_SHOW_MS };
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
    const countdown = new BootCountdown(document.getElementById("countdown"));
    const show = () => {
      setState("starting", `${progress} (${((performance.now() - began) / 1000).toFixed(0)} s)`);
      countdown.show(performance.now());
    };
    const ticker = setInterval(show, 500);
    try {
      session = await coldStart(config.startApiUrl, {
        apiKey: config.apiKey,
        countdown,
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
      countdown.hide();
    }
  }
  const url = new URL(sessionEndpoint(config, session.endpoint));
  url.searchParams.set("token", session.token);
  return url.href;
}

/** Overlays drawn from `where`: the first server ones end the in-browser detection. */
function showRunsOn(where) {
  hook.firstDrawnAt[where] ??= performance.now(); // not the frame's time: a busy thread delays the drawing
  if (where === "server") local?.stop();
  if (hook.runsOn === where) return;
  hook.runsOn = where;
  if (config.startApiUrl) ui.showRunsOn(where, where === "device" ? local.describe() : "on the GPU server");
}

/** The in-browser detector's state for the hook, and its failure for the user. */
function localChanged(detection) {
  hook.local = { state: detection.state, provider: detection.detector?.provider ?? null, error: detection.error, marks: detection.marks };
  if (detection.state === "failed") ui.showError(`detection on this device is not available (${detection.error}); results come when the server is ready`);
  if (detection.state === "stopped") local = null;
}

function start() {
  if (connection) return;
  ui.setActive(true);
  hook.startedAt = performance.now();
  hook.firstDrawnAt = { device: null, server: null };
  if (config.startApiUrl) {
    local = new LocalDetection(() => source, localChanged, preloaded ?? startLoading());
    preloaded = null;
  }
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
      models: (models) => {
        hook.models = models;
        showModels(document, models);
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

/** Results of a closed connection are stale: stop drawing them, and start the display over. */
function clearOverlays() {
  hook.lastResult = null;
  hook.lastDrawn = null;
  motion.clear();
  timeline.clear();
  restartDisplay();
}

function stop() {
  local?.stop();
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
  displayMode: setDisplayMode,
});
ui.showDisplayMode(hook.displayMode);
setState("idle");
/** Pre-start's outcome (prestart.js), for the console and the browser tests. */
hook.preStart = preStart(config, document.getElementById("prestart"));
requestAnimationFrame(render);
await useSource(() => openCamera(pictures));
if (config.autoStart) start();
