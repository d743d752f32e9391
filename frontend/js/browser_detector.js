/**
 * The page's own detector, for the seconds while the GPU instance boots: the GPU detector's
 * weights as a small ONNX (`models/browser_detect.{json,onnx}` beside the page, written by
 * `cvstack models prepare`), run by onnxruntime-web (vendored by `make vendor`, no bundler) on
 * WebGPU when the browser gives an adapter, else on WebAssembly.
 */

import { decodeYolo, letterboxPlacement } from "./yolo_decode.js";

const VENDOR = new URL("../vendor/onnxruntime-web/", import.meta.url);
const MODEL_BASE = new URL("../models/", import.meta.url);
const DESCRIPTOR = "browser_detect.json";
const PAD_VALUE = 114; // ultralytics' letterbox grey, as backend/pipeline/letterbox.py

/** The execution providers in words, for the badge. */
export const PROVIDER_WORDS = { webgpu: "WebGPU", wasm: "WebAssembly" };

export class BrowserDetector {
  /**
   * @param {object} ort  the onnxruntime-web module
   * @param {object} session  its InferenceSession
   * @param {object} descriptor  browser_detect.json
   * @param {"webgpu" | "wasm"} provider
   */
  constructor(ort, session, descriptor, provider) {
    this.ort = ort;
    this.session = session;
    this.descriptor = descriptor;
    this.provider = provider;
    const size = descriptor.input_size;
    this.canvas = new OffscreenCanvas(size, size);
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
  }

  /**
   * Start the runtime, fetch the model meanwhile, and open a session.
   * @param {Record<string, number>} [marks]  gets when each step ended (performance.now()):
   *   `fetched` (the model), `runtime` (its worker started, its WASM compiled, warmed up), `session`
   * @returns {Promise<BrowserDetector>}
   * @throws {Error} saying what is missing (no model here, no WebAssembly, a runtime failure)
   */
  static async load(marks = {}) {
    if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
    const provider = await pickProvider();
    const ort = await loadRuntime(provider);
    const runtime = startRuntime(ort, provider).then(() => (marks.runtime = performance.now()));
    const descriptor = await fetchJson(new URL(DESCRIPTOR, MODEL_BASE));
    const model = await fetchBytes(new URL(descriptor.file, MODEL_BASE));
    marks.fetched = performance.now();
    await runtime;
    const session = await ort.InferenceSession.create(model, { executionProviders: [provider], graphOptimizationLevel: "disabled" }); // optimised by `models prepare`
    marks.session = performance.now();
    return new BrowserDetector(ort, session, descriptor, provider);
  }

  /** Run once on a blank picture: the first run is the slowest (the runtime allocates, the
   * browser has not yet optimised the WASM code that runs most). */
  async warmUp() {
    await this.#run(new Uint8Array(3 * this.descriptor.input_size ** 2));
  }

  /**
   * Detect objects in `picture` (a video, image or canvas).
   * @param {CanvasImageSource} picture
   * @param {number} width  its width in pixels
   * @param {number} height
   * @returns {Promise<object>} an `inference`-shaped result: `{width, height, yolo}` (no tracks)
   */
  async detect(picture, width, height) {
    const { input_size: size, output_format: outputFormat, class_names: names } = this.descriptor;
    const letterbox = letterboxPlacement(width, height, size);
    const output = await this.#run(this.#letterboxed(picture, letterbox));
    const found = decodeYolo(output.data, output.dims.slice(1), { outputFormat, numClasses: names.length, letterbox });
    return {
      width,
      height,
      yolo: { ...found, labels: found.classes.map((c) => names[c]), track_ids: found.classes.map(() => -1) },
    };
  }

  /** Free the session (and the GPU or WASM memory it holds). */
  async release() {
    await this.session.release();
  }

  /** The model's output for planar RGB bytes of the input's size: `{data, dims}`. */
  async #run(pixels) {
    const size = this.descriptor.input_size;
    const input = new this.ort.Tensor("uint8", pixels, [1, 3, size, size]);
    const outputs = await this.session.run({ [this.session.inputNames[0]]: input });
    const { data, dims } = outputs[this.session.outputNames[0]];
    for (const tensor of Object.values(outputs)) tensor.dispose?.();
    return { data, dims };
  }

  /** The picture letterboxed into the square input, as planar RGB bytes. */
  #letterboxed(picture, { padX, padY, newW, newH, size }) {
    const context = this.context;
    context.fillStyle = `rgb(${PAD_VALUE}, ${PAD_VALUE}, ${PAD_VALUE})`;
    context.fillRect(0, 0, size, size);
    context.drawImage(picture, padX, padY, newW, newH);
    const rgba = context.getImageData(0, 0, size, size).data;
    const plane = size * size;
    const pixels = new Uint8Array(3 * plane);
    for (let i = 0; i < plane; i += 1) {
      pixels[i] = rgba[4 * i];
      pixels[plane + i] = rgba[4 * i + 1];
      pixels[2 * plane + i] = rgba[4 * i + 2];
    }
    return pixels;
  }
}

/** "webgpu" when the browser gives a WebGPU adapter, else "wasm". */
async function pickProvider() {
  try {
    return (await navigator.gpu?.requestAdapter()) ? "webgpu" : "wasm";
  } catch {
    return "wasm";
  }
}

/** The runtime build for `provider` (the WebGPU build also runs WASM): a self-contained ES
 * module whose only companion is its .wasm, beside it. */
const RUNTIME_BUILDS = {
  webgpu: { module: "ort.webgpu.bundle.min.mjs", wasm: "ort-wasm-simd-threaded.asyncify.wasm" },
  wasm: { module: "ort.wasm.bundle.min.mjs", wasm: "ort-wasm-simd-threaded.wasm" },
};

async function loadRuntime(provider) {
  const build = RUNTIME_BUILDS[provider];
  let ort;
  try {
    ort = await import(new URL(build.module, VENDOR).href);
  } catch (error) {
    throw new Error(`the in-browser runtime is not here (${error.message}); run \`make vendor\``);
  }
  ort.env.wasm.wasmPaths = { wasm: new URL(build.wasm, VENDOR).href };
  // WASM inference in a worker: on the page's thread each run held back its rendering.
  ort.env.wasm.proxy = provider === "wasm";
  return ort;
}

/**
 * A 457-byte ONNX graph of the detector's kinds of layer (a 3x3 convolution, SiLU, a depthwise
 * convolution; 16 channels of 32x32, weights filled in by constant folding). Opening a session of
 * it starts the runtime (worker, WASM compilation), which onnxruntime-web offers no other way to
 * begin early, and running it a few times gets the browser compiling its convolution code
 * optimised meanwhile: the detector's first run then took ~30 % less CPU (Node, same V8).
 */
const WARM_UP_MODEL = "CAgSADq8AwpCEgJ3cyIIQ29uc3RhbnQqMgoFdmFsdWUqJggEEAdKIBAAAAAAAAAAEAAAAAAAAAADAAAAAAAAAAMAAAAAAAAAoAEECkISAmRzIghDb25zdGFudCoyCgV2YWx1ZSomCAQQB0ogEAAAAAAAAAABAAAAAAAAAAMAAAAAAAAAAwAAAAAAAACgAQQKMwoCd3MSAXciD0NvbnN0YW50T2ZTaGFwZSoZCgV2YWx1ZSoNCAEQASIECtcjPEIBdqABBAo0CgJkcxICZHciD0NvbnN0YW50T2ZTaGFwZSoZCgV2YWx1ZSoNCAEQASIECtcjPEIBdqABBAoiCgF4CgF3EgFjIgRDb252KhEKBHBhZHNAAUABQAFAAaABBwoPCgFjEgFzIgdTaWdtb2lkCg4KAWMKAXMSAW0iA011bAoxCgFtCgJkdxIBZCIEQ29udioMCgVncm91cBgQoAECKhEKBHBhZHNAAUABQAFAAaABBwoPCgFkEgF5IgdTaWdtb2lkEgR3YXJtWhsKAXgSFgoUCAESEAoCCAEKAggQCgIIIAoCCCBiGwoBeRIWChQIARIQCgIIAQoCCBAKAgggCgIIIEIECgAQEQ==";
const WARM_UP_RUNS = 5;

async function startRuntime(ort, provider) {
  const bytes = Uint8Array.from(atob(WARM_UP_MODEL), (c) => c.charCodeAt(0));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: [provider], graphOptimizationLevel: "basic" });
  for (let run = 0; run < WARM_UP_RUNS; run += 1) {
    // a new input each time: the worker takes over the buffer of the one sent
    const input = new ort.Tensor("float32", new Float32Array(16 * 32 * 32).fill(0.5), [1, 16, 32, 32]);
    const outputs = await session.run({ x: input });
    for (const tensor of Object.values(outputs)) tensor.dispose?.();
  }
  await session.release();
}

async function fetchJson(url) {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(url)));
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url.pathname} answered HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}
