/* The "try it" panels of chapters 4 and 5 (their HTML comes from stylelib.tryit.panel).
 *
 * The reader's photo is stylised here, in the browser, by onnxruntime-web running the ONNX
 * networks that stylelib.tryit_build put in _static/tryit/ when the book was built; nothing is
 * uploaded. Nothing is downloaded either until the reader presses a panel's button.
 * "fast": one pass of a feed-forward network. "adain": the photo and the painting are encoded
 * once; every move of the alpha slider is one call of the decoder graph (AdaIN, mix, decode).
 * The fast networks run on the GPU through WebGPU where the browser offers an adapter, else
 * (and AdaIN's always) on the CPU in WebAssembly. The panel element records its state, backend
 * and timings (performance.now()) in data- attributes: state, backend, firstPaintMs, moveMs,
 * shownAlpha, renders; the browser test reads them. */
"use strict";
(() => {
  const BASE = new URL("tryit/", document.currentScript.src);
  const cache = new Map(); // key -> promise: each file, runtime and session made once per visit

  /* The promise that `make()` returned for `key`, made once (and again after a failure). */
  const once = (key, make) => {
    if (!cache.has(key)) cache.set(key, make().catch((error) => { cache.delete(key); throw error; }));
    return cache.get(key);
  };
  const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
  const NAMES = {webgpu: "WebGPU", wasm: "WebAssembly"};
  /* The panels whose networks are tested on WebGPU. AdaIN's is not: on the software adapter
   * of the test machine (no GPU) its VGG encoder did not finish a 96 px photo in 9 minutes. */
  const WEBGPU_PANELS = ["fast"];

  /* "webgpu" where the browser offers a WebGPU adapter (a GPU the page may use), else "wasm". */
  const chooseBackend = () => once("backend", async () => {
    try {
      if (navigator.gpu && await navigator.gpu.requestAdapter()) return "webgpu";
    } catch (error) {
      // a browser whose WebGPU is broken has none to offer
    }
    return "wasm";
  });

  /* Download one file of the manifest, reporting each chunk to `progress(bytes)`. */
  function download(entry, progress) {
    const url = new URL(entry.url, BASE).href;
    return once(url, async () => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`could not download ${entry.url} (HTTP ${response.status})`);
      const bytes = new Uint8Array(entry.bytes);
      const reader = response.body.getReader();
      for (let at = 0; ;) {
        const {done, value} = await reader.read();
        if (done) return bytes.subarray(0, at);
        bytes.set(value, at);
        at += value.length;
        progress(value.length);
      }
    });
  }

  /* Load one build of onnxruntime-web (its script, then its WebAssembly binary) once per
   * page: `files` is the manifest's {script, module, binary} of the chosen backend. Both
   * builds define the same global, so the first one loaded serves every later run. */
  function loadRuntime(files, progress) {
    return once("runtime", async () => {
      const binary = download(files.binary, progress);
      await new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = new URL(files.script.url, BASE).href;
        script.onload = resolve;
        script.onerror = () => reject(new Error("could not load onnxruntime-web"));
        document.head.appendChild(script);
      });
      const ort = window.ort;
      ort.env.wasm.wasmPaths = new URL(files.module.url, BASE).href
        .replace(/[^/]*$/, "");
      ort.env.wasm.wasmBinary = await binary;
      // Threads need a cross-origin-isolated page, which static hosting does not give.
      if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;
      return ort;
    });
  }

  /* An ONNX Runtime session for one downloaded network (`model`, named `url`), on one backend. */
  const session = (ort, url, model, backend) => once(`${url} on ${backend}`, () =>
    ort.InferenceSession.create(model, {executionProviders: [backend]}));
  let webgpuFailed = ""; // why WebGPU failed on this page; later runs go straight to WebAssembly

  /* Decode an image file, refusing files and images above the panel's caps. */
  async function readFile(file, panel) {
    const maxBytes = Number(panel.dataset.maxBytes), maxPixels = Number(panel.dataset.maxPixels);
    if (file.size > maxBytes) {
      throw new Error(`${file.name} is ${megabytes(file.size)}; this panel reads files up to ` +
                      `${megabytes(maxBytes)}: choose a smaller photo.`);
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (error) {
      throw new Error(`${file.name} could not be read as an image (JPEG, PNG, WebP...).`);
    }
    if (bitmap.width * bitmap.height > maxPixels) {
      throw new Error(`${file.name} has ${(bitmap.width * bitmap.height / 1e6).toFixed(0)} ` +
                      `megapixels; this panel takes up to ${maxPixels / 1e6}: make it smaller.`);
    }
    return bitmap;
  }

  /* Draw an image with long side at most `side`, both sides multiples of 8 (the AdaIN
   * encoder halves them three times), and return its pixels as a [1, 3, H, W] RGB tensor. */
  function toTensor(ort, bitmap, side, canvas) {
    const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(16, Math.round(bitmap.width * scale / 8) * 8);
    const height = Math.max(16, Math.round(bitmap.height * scale / 8) * 8);
    canvas.width = width;
    canvas.height = height;
    canvas.hidden = false;
    const context = canvas.getContext("2d", {willReadFrequently: true});
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, 0, 0, width, height);
    const rgba = context.getImageData(0, 0, width, height).data;
    const planes = new Float32Array(3 * width * height);
    for (let i = 0, n = width * height; i < n; i++) {
      for (let c = 0; c < 3; c++) planes[c * n + i] = rgba[4 * i + c] / 255;
    }
    return new ort.Tensor("float32", planes, [1, 3, height, width]);
  }

  /* Paint a [1, 3, H, W] tensor in [0, 1] into a canvas. */
  function paint(tensor, canvas) {
    const [, , height, width] = tensor.dims;
    const n = width * height, planes = tensor.data;
    const image = new ImageData(width, height);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 3; c++) image.data[4 * i + c] = Math.round(255 * planes[c * n + i]);
      image.data[4 * i + 3] = 255;
    }
    canvas.width = width;
    canvas.height = height;
    canvas.hidden = false;
    canvas.getContext("2d").putImageData(image, 0, 0);
  }

  /* Wire up one panel. */
  function setUp(panel) {
    panel.querySelector(".tryit-elsewhere").remove();
    const body = panel.querySelector(".tryit-panel");
    body.hidden = false;
    const field = (name) => body.querySelector(`[name="${name}"]`);
    const bar = body.querySelector("progress"), status = body.querySelector(".tryit-status");
    const input = body.querySelector(".tryit-input"), output = body.querySelector(".tryit-output");
    const say = (text, error = false) => {
      status.textContent = text;
      status.classList.toggle("error", error);
    };
    const slider = field("alpha");
    let render = null; // AdaIN: alpha -> painted result, set by the first run
    let pending = null, busy = false;

    async function show(alpha, started) {
      busy = true;
      await render(alpha);
      panel.dataset.shownAlpha = String(alpha);
      panel.dataset.renders = String(Number(panel.dataset.renders || 0) + 1);
      busy = false;
      return performance.now() - started;
    }

    async function run() {
      const started = performance.now();
      panel.dataset.state = "loading";
      if (typeof WebAssembly !== "object") {
        throw new Error("This browser has no WebAssembly, which the networks need to run " +
                        "here: try a recent Chrome, Firefox, Safari or Edge, or the notebook.");
      }
      const photo = field("photo").files[0];
      if (!photo) throw new Error("Choose a photo first.");
      const photoBitmap = await readFile(photo, panel);
      const ownPainting = field("painting-file") && field("painting-file").files[0];
      const paintingBitmap = ownPainting ? await readFile(ownPainting, panel) : null;

      const listing = await fetch(new URL("manifest.json", BASE));
      if (!listing.ok) {
        throw new Error("This copy of the book was built without the networks (no " +
                        `${listing.url}): read the chapter in the online book, or run it in Colab.`);
      }
      const manifest = await listing.json();
      let backend = "wasm", build = "wasm", why = "";
      if (!WEBGPU_PANELS.includes(panel.dataset.tryit)) why = "this panel runs on the CPU only";
      else if (webgpuFailed) [build, why] = ["webgpu", webgpuFailed]; // loaded; runs wasm too
      else if ((backend = build = await chooseBackend()) === "wasm") {
        why = "this browser offers no WebGPU";
      }
      const runtimeFiles = manifest.runtime.backends[build];
      const needed = [[`onnxruntime-web ${manifest.runtime.version} (${NAMES[build]} build)`,
                       runtimeFiles.binary]];
      if (panel.dataset.tryit === "fast") {
        needed.push([`${field("style").value} network`, manifest.fast[field("style").value]]);
      } else {
        needed.push(["AdaIN encoder", manifest.adain.encoder], ["decoder", manifest.adain.decoder]);
        if (!paintingBitmap) needed.push(["painting", manifest.paintings[field("painting").value]]);
      }
      body.querySelector(".tryit-sizes").textContent = "Downloads for this panel (once per " +
        "visit): " + needed.map(([what, entry]) => `${what} ${megabytes(entry.bytes)}`).join(", ") +
        ".";
      bar.hidden = false;
      bar.max = needed.reduce((sum, [, entry]) => sum + entry.bytes, 0);
      bar.value = 0;
      const progress = (bytes) => { bar.value += bytes; };
      say("downloading…");
      const ort = await loadRuntime(runtimeFiles, progress);
      const side = Number(field("side").value);
      const image = toTensor(ort, photoBitmap, side, input);
      say("running…");
      panel.dataset.state = "running";
      /* Every network on the chosen backend; if WebGPU fails, all of them on WebAssembly,
       * which the WebGPU build also runs. */
      const open = async (entries) => {
        const models = await Promise.all(entries.map((entry) => download(entry, progress)));
        const all = () => Promise.all(entries.map((entry, i) =>
          session(ort, entry.url, models[i], backend)));
        try {
          return await all();
        } catch (error) {
          if (backend !== "webgpu") throw error;
          backend = "wasm";
          why = webgpuFailed = `WebGPU failed (${error.message}), so WebAssembly ran`;
          return all();
        }
      };
      if (panel.dataset.tryit === "fast") {
        const [net] = await open([needed[1][1]]);
        render = async () => paint((await net.run({image})).stylised, output);
        body.querySelector(".tryit-credit").textContent = "";
      } else {
        const [encoder, decoder] = await open(needed.slice(1, 3).map(([, entry]) => entry));
        const picture = paintingBitmap ||
          await createImageBitmap(new Blob([await download(needed[3][1], progress)]));
        const content = (await encoder.run({image})).features;
        const painting = toTensor(ort, picture, side, body.querySelector(".tryit-painting"));
        const style = (await encoder.run({image: painting})).features;
        render = async (alpha) => {
          const feeds = {content, style, alpha: new ort.Tensor("float32", [alpha], [])};
          paint((await decoder.run(feeds)).image, output);
        };
        body.querySelector(".tryit-credit").textContent = paintingBitmap ? "" :
          "Painting: " + manifest.paintings[field("painting").value].credit;
        slider.disabled = false;
      }
      const ms = await show(slider ? Number(slider.value) : 1, started);
      panel.dataset.firstPaintMs = ms.toFixed(0);
      bar.hidden = true;
      panel.dataset.backend = backend;
      panel.dataset.state = "done";
      const threads = backend === "wasm" && !self.crossOriginIsolated ? ", one thread" : "";
      say(`done in ${(ms / 1000).toFixed(1)} s on ${NAMES[backend]}${threads} ` +
          `(downloads included)${why ? `; ${why}` : ""}`);
    }

    field("run").addEventListener("click", async () => {
      field("run").disabled = true;
      try {
        await run();
      } catch (error) {
        panel.dataset.state = "error";
        bar.hidden = true;
        say(error.message, true);
      } finally {
        field("run").disabled = false;
      }
    });

    if (slider) {
      slider.addEventListener("input", async () => {
        field("alpha-value").textContent = Number(slider.value).toFixed(2);
        pending = {alpha: Number(slider.value), started: performance.now()};
        if (busy || !render) return; // the render in flight picks up the latest value
        while (pending) {
          const {alpha, started} = pending;
          pending = null;
          const ms = await show(alpha, started);
          panel.dataset.moveMs = ms.toFixed(0);
          say(`alpha ${alpha.toFixed(2)}: ${ms.toFixed(0)} ms`);
        }
      });
    }
  }

  const start = () => document.querySelectorAll(".tryit").forEach(setUp);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
