// medattn pages: progress polling for running cases, overlay opacity, model list per pipeline.
(function () {
  "use strict";

  function pollCase(section) {
    const id = section.dataset.caseId;
    const bar = document.getElementById("progress-bar");
    const msg = document.getElementById("progress-message");
    if (bar) bar.style.width = (bar.dataset.progress || "0") + "%";
    const timer = setInterval(async function () {
      let r;
      try { r = await fetch("/api/cases/" + id, { credentials: "same-origin" }); } catch (e) { return; }
      if (!r.ok) return;
      const c = await r.json();
      if (bar) bar.style.width = Math.round(c.progress * 100) + "%";
      if (msg && c.message) msg.textContent = c.message;
      if (c.status === "done" || c.status === "failed") { clearInterval(timer); location.reload(); }
    }, 700);
  }

  function overlayOpacity() {
    const slider = document.getElementById("opacity");
    const layer = document.getElementById("overlay-layer");
    if (!slider || !layer) return;
    const apply = function () { layer.style.opacity = String(slider.value / 100); };
    slider.addEventListener("input", apply);
    apply();
  }

  function modelChoices() {
    const pipe = document.getElementById("pipeline");
    const model = document.getElementById("model");
    if (!pipe || !model) return;
    const sync = function () {
      const base = pipe.value.split("+").pop();
      for (const opt of model.options) {
        if (!opt.dataset.pipeline) continue;
        const ok = opt.dataset.pipeline === pipe.value || opt.dataset.pipeline === base;
        opt.hidden = !ok; opt.disabled = !ok;
      }
      if (model.selectedOptions.length && model.selectedOptions[0].disabled) model.value = "";
    };
    pipe.addEventListener("change", sync);
    sync();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const section = document.getElementById("case");
    if (section && (section.dataset.status === "queued" || section.dataset.status === "running")) pollCase(section);
    overlayOpacity();
    modelChoices();
  });
})();
