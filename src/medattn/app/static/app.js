// medattn pages: progress polling for running cases, the case viewer, case-list refresh, model list per pipeline.
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

  // Case list: while a case is queued or running, poll the API and reload when a status changes.
  function refreshCaseList() {
    const rows = document.querySelectorAll("tr[data-case-status]");
    const busy = function (st) { return st === "queued" || st === "running"; };
    if (!Array.from(rows).some(function (r) { return busy(r.dataset.caseStatus); })) return;
    const timer = setInterval(async function () {
      let r;
      try { r = await fetch("/api/cases?limit=500", { credentials: "same-origin" }); } catch (e) { return; }
      if (!r.ok) return;
      const now = {};
      for (const c of (await r.json()).cases) now[c.id] = c;
      for (const row of rows) {
        const c = now[row.dataset.caseId];
        if (c && c.status !== row.dataset.caseStatus) { clearInterval(timer); location.reload(); return; }
        const bar = row.querySelector(".mini-progress span");
        if (c && bar) bar.style.width = Math.round(c.progress * 100) + "%";
      }
    }, 2000);
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
    const viewer = document.getElementById("viewer");
    if (viewer && window.MedattnViewer) window.MedattnViewer(viewer);
    refreshCaseList();
    modelChoices();
  });
})();
