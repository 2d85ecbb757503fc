// medattn case viewer: one canvas; slices fetched raw from /api/cases/<id>/slices/<layer>/<z> and drawn here
// (window/level, mask fill or outline with lesion numbers, attention map), with zoom, pan and a slice slider.
(function () {
  "use strict";

  const PRESET_DEFAULT = [40, 400]; // CT soft tissue
  const MASK_RGB = [255, 90, 40];
  const PICK_RGB = [0, 229, 255];
  const CACHE_MAX = 48;

  function jet(a) { // 0..1 -> [r, g, b] 0..255, the ramp drawn by .colorbar-ramp in style.css
    const c = function (x) { return Math.round(255 * Math.min(1, Math.max(0, x))); };
    return [c(1.5 - Math.abs(4 * a - 3)), c(1.5 - Math.abs(4 * a - 2)), c(1.5 - Math.abs(4 * a - 1))];
  }
  const JET = Array.from({ length: 256 }, function (_, i) { return jet(i / 255); });

  const TYPED = { uint8: Uint8Array, uint16: Uint16Array, int16: Int16Array, float32: Float32Array };

  function Viewer(root) {
    const id = root.dataset.caseId;
    const W = +root.dataset.width, H = +root.dataset.height, Z = +root.dataset.slices;
    const colour = root.dataset.colour === "1";
    const layers = root.dataset.layers.split(",").filter(Boolean);
    const canvas = document.getElementById("view-canvas");
    const port = document.getElementById("viewport");
    const readout = document.getElementById("readout");
    const ctx = canvas.getContext("2d");
    const off = document.createElement("canvas");
    off.width = W; off.height = H;
    const offCtx = off.getContext("2d");
    const $ = function (sel) { return document.getElementById(sel); };

    const dicomWindow = root.dataset.window ? root.dataset.window.split(",").map(Number) : null;
    const state = {
      z: Math.min(Z - 1, Math.max(0, +root.dataset.shownSlice || 0)),
      base: layers.includes("processed") ? "processed" : "image",
      wl: dicomWindow || (root.dataset.ct === "1" ? PRESET_DEFAULT.slice() : null),
      zoom: 1, panX: 0, panY: 0, opacity: 0.5, outline: false, numbers: true, attention: 0, pick: 0,
    };
    const cache = new Map();
    let current = null; // {base, labels, attention} of the slice on screen
    let drawing = 0;

    async function fetchSlice(layer, z) {
      const key = layer + "/" + z;
      if (cache.has(key)) return cache.get(key);
      const r = await fetch("/api/cases/" + id + "/slices/" + layer + "/" + z, { credentials: "same-origin" });
      if (!r.ok) throw new Error("slice " + key + ": HTTP " + r.status);
      const T = TYPED[r.headers.get("X-Dtype")];
      if (!T) throw new Error("unknown pixel type " + r.headers.get("X-Dtype"));
      const item = { data: new T(await r.arrayBuffer()), shape: r.headers.get("X-Shape").split(",").map(Number) };
      cache.set(key, item);
      if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
      return item;
    }

    async function load() {
      const ticket = ++drawing;
      const want = [fetchSlice(state.base, state.z),
        layers.includes("labels") ? fetchSlice("labels", state.z) : null,
        layers.includes("attention") ? fetchSlice("attention", state.z) : null];
      let got;
      try { got = await Promise.all(want); } catch (e) { readout.textContent = String(e.message || e); return; }
      if (ticket !== drawing) return; // a newer slice was asked for meanwhile
      current = { base: got[0], labels: got[1], attention: got[2] };
      if (!state.wl && !colour) state.wl = autoWindow(current.base.data);
      syncControls();
      compose();
    }

    function autoWindow(v) { // 1st..99th percentile of the slice for gray images without a preset
      const step = Math.max(1, Math.floor(v.length / 20000));
      const s = [];
      for (let i = 0; i < v.length; i += step) s.push(v[i]);
      s.sort(function (a, b) { return a - b; });
      const lo = s[Math.floor(0.01 * (s.length - 1))], hi = s[Math.ceil(0.99 * (s.length - 1))];
      return [(lo + hi) / 2, Math.max(1, hi - lo)];
    }

    function compose() { // the slice at full resolution into the off-screen canvas
      const img = offCtx.createImageData(W, H);
      const px = img.data, v = current.base.data;
      if (colour) {
        for (let i = 0, j = 0; i < W * H; i++, j += 3) { px[4 * i] = v[j]; px[4 * i + 1] = v[j + 1]; px[4 * i + 2] = v[j + 2]; px[4 * i + 3] = 255; }
      } else {
        const lo = state.wl[0] - state.wl[1] / 2, k = 255 / state.wl[1];
        for (let i = 0; i < W * H; i++) {
          const g = Math.max(0, Math.min(255, (v[i] - lo) * k));
          px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = g; px[4 * i + 3] = 255;
        }
      }
      if (current.attention && state.attention > 0) blendAttention(px, current.attention.data, state.attention);
      if (current.labels && (state.opacity > 0 || state.outline)) blendLabels(px, current.labels.data);
      offCtx.putImageData(img, 0, 0);
      draw();
    }

    function blendAttention(px, att, alpha) {
      for (let i = 0; i < W * H; i++) {
        const c = JET[att[i]];
        for (let ch = 0; ch < 3; ch++) px[4 * i + ch] = px[4 * i + ch] * (1 - alpha) + c[ch] * alpha;
      }
    }

    function blendLabels(px, lab) {
      const alpha = state.outline ? Math.max(state.opacity, 0.9) : state.opacity;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const i = y * W + x, l = lab[i];
          if (!l) continue;
          if (state.outline && x > 0 && x < W - 1 && y > 0 && y < H - 1 &&
              lab[i - 1] === l && lab[i + 1] === l && lab[i - W] === l && lab[i + W] === l) continue;
          const c = l === state.pick ? PICK_RGB : MASK_RGB;
          for (let ch = 0; ch < 3; ch++) px[4 * i + ch] = px[4 * i + ch] * (1 - alpha) + c[ch] * alpha;
        }
      }
    }

    function geometry() {
      const fit = Math.min(canvas.width / W, canvas.height / H);
      const s = fit * state.zoom;
      return { s: s, x: (canvas.width - W * s) / 2 + state.panX, y: (canvas.height - H * s) / 2 + state.panY };
    }

    function draw() { // the off-screen slice onto the visible canvas, then the lesion numbers
      const dpr = window.devicePixelRatio || 1;
      const cw = Math.round(port.clientWidth * dpr), ch = Math.round(port.clientHeight * dpr);
      if (canvas.width !== cw || canvas.height !== ch) { canvas.width = cw; canvas.height = ch; }
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, cw, ch);
      if (!current) return;
      const g = geometry();
      ctx.imageSmoothingEnabled = g.s < 1;
      ctx.drawImage(off, g.x, g.y, W * g.s, H * g.s);
      if (current.labels && state.numbers) drawNumbers(g, dpr);
      root.dataset.drawnSlice = String(state.z + 1); // for tests and screen readers of the state
    }

    function drawNumbers(g, dpr) {
      const lab = current.labels.data, box = {};
      for (let i = 0; i < lab.length; i++) {
        const l = lab[i];
        if (!l) continue;
        const x = i % W, y = (i - x) / W, b = box[l];
        if (!b) box[l] = [x, y, x, y];
        else { if (x < b[0]) b[0] = x; if (x > b[2]) b[2] = x; if (y < b[1]) b[1] = y; if (y > b[3]) b[3] = y; }
      }
      ctx.font = "bold " + Math.round(16 * dpr) + "px system-ui, sans-serif";
      ctx.textBaseline = "bottom";
      ctx.lineWidth = 3 * dpr; ctx.strokeStyle = "#000";
      const shown = [];
      for (const l in box) {
        const b = box[l];
        const tx = g.x + (b[2] + 1) * g.s + 2 * dpr, ty = g.y + b[1] * g.s;
        ctx.fillStyle = +l === state.pick ? "rgb(" + PICK_RGB + ")" : "#fff";
        ctx.strokeText(l, tx, ty); ctx.fillText(l, tx, ty);
        shown.push(l);
      }
      root.dataset.numbersShown = shown.join(",");
    }

    function syncControls() {
      if (state.wl && $("wl-center")) { $("wl-center").value = Math.round(state.wl[0]); $("wl-width").value = Math.round(state.wl[1]); }
      for (const b of root.querySelectorAll("[data-wl]")) {
        const p = b.dataset.wl.split(",").map(Number);
        b.setAttribute("aria-pressed", String(!!state.wl && p[0] === state.wl[0] && p[1] === state.wl[1]));
      }
      for (const b of root.querySelectorAll("[data-base]")) b.setAttribute("aria-pressed", String(b.dataset.base === state.base));
      if ($("slice")) { $("slice").value = state.z + 1; $("slice-number").textContent = "Slice " + (state.z + 1) + " / " + Z; }
      root.dataset.currentWindow = state.wl ? state.wl.join(",") : "";
    }

    function goSlice(z) {
      z = Math.max(0, Math.min(Z - 1, z));
      if (z === state.z && current) return;
      state.z = z; syncControls(); load();
    }

    function setZoom(f, cx, cy) {
      const z = Math.max(0.25, Math.min(32, state.zoom * f));
      if (cx !== undefined) { // keep the point under the cursor in place
        const g = geometry(), k = z / state.zoom;
        state.panX += (cx - (g.x + W * g.s / 2)) * (1 - k);
        state.panY += (cy - (g.y + H * g.s / 2)) * (1 - k);
      }
      state.zoom = z; draw();
    }

    function bind() {
      for (const b of root.querySelectorAll("[data-wl]")) {
        b.addEventListener("click", function () { state.wl = b.dataset.wl.split(",").map(Number); syncControls(); compose(); });
      }
      for (const b of root.querySelectorAll("[data-base]")) {
        b.addEventListener("click", function () { state.base = b.dataset.base; load(); });
      }
      for (const n of ["wl-center", "wl-width"]) {
        if (!$(n)) continue;
        $(n).addEventListener("change", function () {
          state.wl = [+$("wl-center").value, Math.max(1, +$("wl-width").value)]; syncControls(); compose();
        });
      }
      const on = function (elId, ev, fn) { if ($(elId)) $(elId).addEventListener(ev, fn); };
      on("slice", "input", function () { goSlice(+$("slice").value - 1); });
      on("opacity", "input", function () { state.opacity = $("opacity").value / 100; compose(); });
      on("attention-opacity", "input", function () { state.attention = $("attention-opacity").value / 100; compose(); });
      on("outline", "change", function () { state.outline = $("outline").checked; compose(); });
      on("numbers", "change", function () { state.numbers = $("numbers").checked; draw(); });
      on("zoom-in", "click", function () { setZoom(1.25); });
      on("zoom-out", "click", function () { setZoom(0.8); });
      on("zoom-fit", "click", function () { state.zoom = 1; state.panX = state.panY = 0; draw(); });
      port.addEventListener("wheel", function (e) {
        e.preventDefault();
        const dpr = window.devicePixelRatio || 1;
        if (Z > 1 && !e.ctrlKey) goSlice(state.z + (e.deltaY > 0 ? 1 : -1));
        else setZoom(e.deltaY > 0 ? 0.9 : 1.1, e.offsetX * dpr, e.offsetY * dpr);
      }, { passive: false });
      port.addEventListener("keydown", function (e) {
        const step = { ArrowUp: -1, ArrowDown: 1, PageUp: -10, PageDown: 10 }[e.key];
        if (step && Z > 1) { e.preventDefault(); goSlice(state.z + step); }
      });
      let drag = null;
      port.addEventListener("pointerdown", function (e) {
        drag = { x: e.clientX, y: e.clientY, wl: state.wl ? state.wl.slice() : null, shift: e.shiftKey && !colour };
        port.setPointerCapture(e.pointerId);
      });
      port.addEventListener("pointermove", function (e) {
        hover(e);
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (drag.shift && drag.wl) {
          state.wl = [drag.wl[0] + dy * drag.wl[1] / 200, Math.max(1, drag.wl[1] * Math.exp(dx / 200))];
          syncControls(); compose();
        } else {
          const dpr = window.devicePixelRatio || 1;
          state.panX += dx * dpr; state.panY += dy * dpr; drag.x = e.clientX; drag.y = e.clientY; draw();
        }
      });
      port.addEventListener("pointerup", function () { drag = null; });
      window.addEventListener("resize", draw);
      for (const row of document.querySelectorAll("#lesions tr[data-lesion]")) {
        const pick = function () {
          state.pick = +row.dataset.lesion;
          for (const r of document.querySelectorAll("#lesions tr.selected")) r.classList.remove("selected");
          row.classList.add("selected");
          root.scrollIntoView({ block: "nearest" });
          if (Z > 1 && +row.dataset.slice - 1 !== state.z) goSlice(+row.dataset.slice - 1); else compose();
        };
        row.addEventListener("click", pick);
        row.addEventListener("keydown", function (e) { if (e.key === "Enter") pick(); });
      }
    }

    function hover(e) { // pixel position and value under the cursor
      if (!current) return;
      const dpr = window.devicePixelRatio || 1, g = geometry();
      const x = Math.floor((e.offsetX * dpr - g.x) / g.s), y = Math.floor((e.offsetY * dpr - g.y) / g.s);
      if (x < 0 || y < 0 || x >= W || y >= H) { readout.textContent = ""; return; }
      const v = current.base.data, i = y * W + x;
      const val = colour ? [v[3 * i], v[3 * i + 1], v[3 * i + 2]].join(", ") : (Number.isInteger(v[i]) ? v[i] : v[i].toFixed(1));
      const lab = current.labels ? current.labels.data[i] : 0;
      readout.textContent = "x " + x + ", y " + y + ": " + val + (root.dataset.ct === "1" ? " HU" : "") + (lab ? " · lesion " + lab : "");
    }

    bind();
    syncControls();
    load();
  }

  window.MedattnViewer = Viewer;
})();
