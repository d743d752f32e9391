/** The controls and read-outs around the video: buttons, stage toggles, status, stats, messages. */

const MAX_MESSAGES = 20;

export class Ui {
  #active = false;

  /**
   * @param {Document} doc
   * @param {object} stages  the initial stage toggles
   */
  constructor(doc, stages) {
    this.doc = doc;
    this.startButton = doc.getElementById("start");
    this.stopButton = doc.getElementById("stop");
    this.ocrButton = doc.getElementById("ocr");
    this.retryButton = doc.getElementById("retry");
    this.noPicture = doc.getElementById("no-source");
    this.cameraButton = doc.getElementById("use-camera");
    this.fileInput = doc.getElementById("file");
    this.displayModeSelect = doc.getElementById("display-mode");
    this.status = doc.getElementById("status");
    this.runsOn = doc.getElementById("runs-on");
    this.stages = [...doc.querySelectorAll("#stages input[type=checkbox]")];
    for (const box of this.stages) box.checked = Boolean(stages[box.name]);
  }

  /** @returns {object} the stage toggles as {detection, pose, ocr, motion, llm} */
  stageValues() {
    return Object.fromEntries(this.stages.map((box) => [box.name, box.checked]));
  }

  /**
   * Wire the controls to the page's actions.
   * @param {{start: Function, stop: Function, ocr: Function, retry: Function, stages: Function, camera: Function, file: Function, displayMode: Function}} actions
   */
  bind(actions) {
    this.startButton.addEventListener("click", () => actions.start());
    this.stopButton.addEventListener("click", () => actions.stop());
    this.ocrButton.addEventListener("click", () => actions.ocr());
    this.retryButton.addEventListener("click", () => actions.retry());
    this.cameraButton.addEventListener("click", () => actions.camera());
    this.fileInput.addEventListener("change", () => {
      if (this.fileInput.files.length) actions.file(this.fileInput.files[0]);
    });
    for (const box of this.stages) {
      box.addEventListener("change", () => {
        this.#enableOcrButton();
        actions.stages(this.stageValues());
      });
    }
    this.displayModeSelect.addEventListener("change", () => actions.displayMode(this.displayModeSelect.value));
  }

  /** @param {"sync" | "live"} mode  the display mode in use */
  showDisplayMode(mode) {
    this.displayModeSelect.value = mode;
    this.doc.querySelector("[data-stat=displayMode]").textContent = mode;
  }

  /** @param {boolean} active  whether a session is started (connected or trying to) */
  setActive(active) {
    this.#active = active;
    this.startButton.disabled = active;
    this.stopButton.disabled = !active;
    this.#enableOcrButton();
  }

  /** "Read text now" works only in a started session with the OCR stage on. */
  #enableOcrButton() {
    this.ocrButton.disabled = !(this.#active && this.stageValues().ocr);
  }

  /** @param {boolean} shown  whether to say that there is no picture (no camera, no file) */
  showNoPicture(shown) {
    this.noPicture.hidden = !shown;
  }

  /**
   * The status line; "Retry now" is offered only while waiting to reconnect.
   * @param {string} state  a short state word, also set as `data-state` for styling and tests
   * @param {string} [detail]
   */
  setStatus(state, detail = "") {
    this.status.dataset.state = state;
    this.status.textContent = detail ? `${state}: ${detail}` : state;
    this.retryButton.hidden = state !== "reconnecting";
  }

  /** @param {ReturnType<import("./stats.js").Stats["snapshot"]> & {displayDelayMs: number}} snapshot */
  showStats(snapshot) {
    const text = {
      renderFps: snapshot.renderFps.toFixed(0),
      inferenceFps: snapshot.inferenceFps.toFixed(1),
      latencyMs: Number.isFinite(snapshot.latencyMs) ? `${snapshot.latencyMs.toFixed(0)} ms` : "-",
      framesSent: String(snapshot.framesSent),
      droppedFrames: `${snapshot.droppedFrames} (server ${snapshot.serverDroppedFrames}, lost ${snapshot.lostFrames})`,
      reconnects: String(snapshot.reconnects),
      displayDelayMs: snapshot.displayDelayMs.toFixed(0),
    };
    for (const [key, value] of Object.entries(text)) {
      this.doc.querySelector(`[data-stat=${key}]`).textContent = value;
    }
  }

  /**
   * The badge over the picture saying where its detections come from.
   * @param {"device" | "server"} where
   * @param {string} text
   */
  showRunsOn(where, text) {
    this.runsOn.dataset.where = where;
    this.runsOn.textContent = text;
    this.runsOn.hidden = false;
  }

  /** @param {string} queue  the last `queue_status` in words */
  showQueue(queue) {
    this.doc.querySelector("[data-stat=queue]").textContent = queue;
  }

  /** @param {string} text  an error for the user: what went wrong and what to do */
  showError(text) {
    this.#prepend("errors", `${new Date().toLocaleTimeString()} ${text}`);
  }

  /** @param {string} text  one LLM scene summary */
  showSummary(text) {
    this.#prepend("summaries", text);
  }

  #prepend(listId, text) {
    const list = this.doc.getElementById(listId);
    const item = this.doc.createElement("li");
    item.textContent = text;
    list.prepend(item);
    while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
  }
}
