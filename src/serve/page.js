"use strict";
const results = document.getElementById("results");
const picker = document.getElementById("files");
const parallel = 4;
let queue = [];
let running = 0;

fetch("/v1/model").then(r => r.json()).then(m => {
  document.getElementById("model").textContent =
    `${m.classes} classes, input ${m.input.width}x${m.input.height}, preset ${m.preset}; ` +
    "choose a photo to see what the decision rests on.";
}).catch(() => { document.getElementById("model").textContent = "The service does not answer."; });

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function errorText(response, body) {
  return body && body.error ? body.error : `HTTP ${response.status}`;
}

function addPhotos(files) {
  for (const file of files) {
    if (file.type && !file.type.startsWith("image/")) continue;
    queue.push(card(file));
  }
  pump();
}

function card(file) {
  const url = URL.createObjectURL(file);
  const image = element("img", { src: url, alt: file.name });
  const button = element("button", { className: "photo", type: "button", disabled: true }, image);
  button.setAttribute("aria-label", `${file.name}: show the occlusion heatmap`);
  const status = element("p", { className: "status", textContent: "Classifying…" });
  status.setAttribute("role", "status");
  const top = element("ol", { className: "top" });
  const item = element("li", { className: "card" }, button, element("h2", { textContent: file.name }), status, top);
  item.dataset.state = "pending";
  results.prepend(item);
  const entry = { file, url, item, image, button, status, top, heatmap: null, showing: "photo" };
  button.addEventListener("click", () => toggle(entry));
  return entry;
}

function pump() {
  while (running < parallel && queue.length) {
    const entry = queue.shift();
    running++;
    classify(entry).finally(() => { running--; pump(); });
  }
}

async function classify(entry) {
  const form = new FormData();
  form.append("file", entry.file, entry.file.name);
  try {
    const response = await fetch("/v1/classify?top_k=5", { method: "POST", body: form });
    const body = await response.json().catch(() => null);
    const record = body && body.results && body.results[0];
    if (!record || record.error) throw new Error(record ? record.error : errorText(response, body));
    for (const p of record.predictions) {
      const pct = (100 * p.probability).toFixed(1) + "%";
      const bar = element("div", { className: "bar" }, element("span"));
      bar.firstChild.style.width = Math.max(0.5, 100 * p.probability) + "%";
      bar.setAttribute("aria-hidden", "true");
      entry.top.append(element("li", {},
        element("span", { className: "name", textContent: p.name }),
        element("span", { className: "pct", textContent: pct }), bar));
    }
    entry.status.textContent = "Press the photo for its heatmap.";
    entry.button.disabled = false;
    entry.item.dataset.state = "done";
  } catch (err) {
    entry.status.textContent = err.message;
    entry.status.className = "status error";
    entry.item.dataset.state = "error";
  }
}

async function toggle(entry) {
  if (entry.showing === "heatmap") {
    show(entry, entry.url, "photo", "Press the photo for its heatmap.");
    return;
  }
  if (!entry.heatmap) {
    entry.button.disabled = true;
    entry.status.textContent = "Sliding a grey patch over the photo…";
    try {
      const response = await fetch("/v1/explain", { method: "POST", body: entry.file });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new Error(errorText(response, body));
      }
      entry.heatmap = URL.createObjectURL(await response.blob());
    } catch (err) {
      entry.status.textContent = err.message;
      return;
    } finally {
      entry.button.disabled = false;
    }
  }
  show(entry, entry.heatmap, "heatmap",
       "Bright: hiding this part lowers the top class most. Press again for the photo.");
}

function show(entry, src, view, text) {
  entry.image.src = src;
  entry.image.dataset.view = view;
  entry.showing = view;
  entry.status.textContent = text;
}

picker.addEventListener("change", () => { addPhotos(picker.files); picker.value = ""; });
document.addEventListener("dragover", e => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", e => { if (!e.relatedTarget) document.body.classList.remove("dragging"); });
document.addEventListener("drop", e => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  addPhotos(e.dataTransfer.files);
});
