// babygan serve: the page. Plain JS, no build step. The server keeps the encoded parents,
// so a slider only asks for a new prediction; at most one is in flight and, while it
// runs, further changes are merged into the next one (dragging does not pile up requests).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  photo: { father: null, mother: null },  // the server's answer for each upload
  face: { father: null, mother: null },   // the chosen face, 1-based
  inflight: false,
  again: false,
  last: null,                              // the last prediction's answer
  animeSeed: null,                         // the anime style shown: null = the child's own (default take)
};

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the server does not answer (is babygan serve still running?)");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

function setState(who, text, isError = false) {
  const el = $(`${who}-state`);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ photos

async function upload(who, file) {
  if (!file) return;
  const limit = state.info ? state.info.max_upload_bytes : Infinity;
  if (file.size > limit) {
    const mb = (n) => (n / 1048576).toFixed(1);
    failPhoto(who, `${file.name}: ${mb(file.size)} MB is over the upload limit of ${mb(limit)} MB`);
    return;
  }
  state.photo[who] = null;
  updateButtons();
  setState(who, `Reading ${file.name}...`);
  try {
    const answer = await api(`/api/photo?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    });
    state.photo[who] = answer;
    state.face[who] = answer.default_face;
    const preview = $(`${who}-preview`);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    showFaces(who);
    showMessage("");
    scheduleRender();
  } catch (err) {
    failPhoto(who, err.message);
  }
}

function failPhoto(who, text) {
  state.photo[who] = null;
  $(`${who}-preview`).hidden = true;
  $(`${who}-faces`).replaceChildren();
  setState(who, text, true);
  showMessage(text);
  updateButtons();
}

function showFaces(who) {
  const photo = state.photo[who];
  const box = $(`${who}-faces`);
  box.replaceChildren();
  const n = photo.faces.length;
  if (n > 1) {
    for (const face of photo.faces) {
      const img = document.createElement("img");
      img.src = face.thumb;
      img.alt = `face ${face.index}`;
      img.title = `face ${face.index} from the left`;
      img.dataset.face = face.index;
      img.classList.toggle("chosen", face.index === state.face[who]);
      img.addEventListener("click", () => {
        state.face[who] = face.index;
        showFaces(who);
        scheduleRender();
      });
      box.append(img);
    }
    setState(who, `${photo.name}: ${n} faces found; using face ${state.face[who]} (click another to change)`);
  } else {
    setState(who, `${photo.name}: ready`);
  }
}

function wireDrop(who) {
  const zone = $(`${who}-drop`);
  $(`${who}-file`).addEventListener("change", (ev) => upload(who, ev.target.files[0]));
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    if (ev.dataTransfer.files.length) upload(who, ev.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------ parameters

function params() {
  const shifts = {};
  for (const input of document.querySelectorAll("#directions input")) shifts[input.dataset.name] = Number(input.value);
  return {
    father: { photo: state.photo.father.id, face: state.face.father },
    mother: { photo: state.photo.mother.id, face: state.face.mother },
    genes: Number($("genes").value),
    style: $("style").value,
    age: Number($("age").value),
    shifts,
    children: Number($("children").value) || 1,
    seed: Number($("seed").value) || 0,
    anime: animeOn(),
    anime_seed: animeOn() ? state.animeSeed : null,
  };
}

function animeOn() { return Boolean(state.info && state.info.anime && $("anime").checked); }

function slider(name, min, max, step, value) {
  const label = document.createElement("label");
  label.textContent = name.replaceAll("_", " ") + " ";
  const input = document.createElement("input");
  Object.assign(input, { type: "range", id: `shift-${name}`, min, max, step, value });
  input.dataset.name = name;
  const out = document.createElement("output");
  out.id = `shift-${name}-value`;
  out.textContent = value;
  label.append(out, input);
  input.addEventListener("input", () => { out.textContent = input.value; scheduleRender(); });
  return label;
}

// ------------------------------------------------------------------ predicting

function ready() { return Boolean(state.photo.father && state.photo.mother); }

function scheduleRender() {
  if (!ready()) return;
  if (state.inflight) { state.again = true; return; }
  predict();
}

async function predict() {
  state.inflight = true;
  state.again = false;
  const sent = params();
  const stopProgress = startProgress();
  try {
    const answer = await api("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(sent),
    });
    showChild(answer, sent);
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  } finally {
    stopProgress();
    state.inflight = false;
    updateButtons();
    if (state.again) scheduleRender();
  }
}

function showChild(answer, sent) {
  state.last = answer;
  const img = $("child-image");
  const first = answer.children[0];
  // data-run / data-age tell a browser test which prediction the picture shows, once it has loaded
  img.onload = () => { img.dataset.run = answer.run; img.dataset.age = String(sent.age); };
  img.alt = first.name;
  img.src = first.url;
  const box = $("siblings");
  box.replaceChildren();
  if (answer.children.length > 1) {
    for (const child of answer.children) {
      const a = document.createElement("a");
      a.href = `${child.url}?download=1`;
      a.title = `download ${child.name}`;
      const thumb = document.createElement("img");
      thumb.src = child.url;
      thumb.alt = child.name;
      a.append(thumb);
      box.append(a);
    }
  }
  $("download-child").href = `${first.url}?download=1`;
  $("download-sheet").href = `${answer.sheet}?download=1`;
  showAnime(first.anime || null, answer.run);
}

function showAnime(url, run) {
  // the anime child beside the child; data-run / data-anime-seed tell a browser test what it shows
  const img = $("anime-image");
  img.hidden = !url;
  $("download-anime").hidden = !url;
  if (!url) return;
  const seed = state.animeSeed === null ? "default" : String(state.animeSeed);
  img.onload = () => { img.dataset.run = run; img.dataset.animeSeed = seed; };
  img.src = url;
  $("download-anime").href = `${url}?download=1`;
}

async function anotherStyle() {
  // the same child (its code kept by the server) in the next style: no new encode or blend
  if (!state.last || !state.last.children[0].anime) return;
  const button = $("another-style");
  button.disabled = true;
  const seed = state.animeSeed === null ? 0 : state.animeSeed + 1;
  try {
    const answer = await api("/api/anime", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ run: state.last.run, seed }),
    });
    state.animeSeed = answer.seed;
    for (const [i, child] of answer.children.entries()) state.last.children[i].anime = child.anime;
    showAnime(answer.children[0].anime, answer.run);
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  } finally {
    updateButtons();
  }
}

function startProgress() {
  // Poll what the server is doing; show it only when it takes a moment (a slider's prediction
  // is quick, a new photo's encode is not).
  const box = $("progress");
  const text = $("progress-text");
  const t0 = performance.now();
  let timer = null;
  const poll = async () => {
    try {
      const s = await api("/api/status");
      const waited = ((performance.now() - t0) / 1000).toFixed(0);
      text.textContent = s.stage ? `${s.stage}... ${waited} s` : `Waiting... ${waited} s`;
      box.hidden = false;
    } catch (err) { /* the prediction's own answer reports a dead server */ }
    timer = setTimeout(poll, 500);
  };
  timer = setTimeout(poll, 300);
  return () => { clearTimeout(timer); box.hidden = true; };
}

async function makeGif() {
  if (!ready()) return;
  const button = $("make-gif");
  button.disabled = true;
  const stopProgress = startProgress();
  try {
    const answer = await api("/api/sweep", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(params()),
    });
    const link = $("download-gif");
    link.href = `${answer.gif}?download=1`;
    link.hidden = false;
    const preview = $("gif-preview");
    preview.src = answer.gif;
    preview.hidden = false;
    const anime = $("anime-gif-preview");
    anime.hidden = !answer.anime_gif;
    if (answer.anime_gif) anime.src = answer.anime_gif;
    showMessage("");
  } catch (err) {
    showMessage(err.message);
  } finally {
    stopProgress();
    updateButtons();
  }
}

function updateButtons() {
  const have = Boolean(state.last) && ready();
  $("download-child").classList.toggle("disabled", !have);
  $("download-sheet").classList.toggle("disabled", !have);
  $("make-gif").disabled = !ready();
  const button = $("another-style");
  button.hidden = !animeOn();
  button.disabled = !(have && state.last.children[0].anime);
}

// ------------------------------------------------------------------ start

async function start() {
  wireDrop("father");
  wireDrop("mother");
  for (const id of ["genes", "age"]) {
    $(id).addEventListener("input", () => { $(`${id}-value`).textContent = $(id).value; scheduleRender(); });
  }
  for (const id of ["style", "children", "seed"]) $(id).addEventListener("change", scheduleRender);
  $("make-gif").addEventListener("click", makeGif);
  $("another-style").addEventListener("click", anotherStyle);
  $("anime").addEventListener("change", () => { state.animeSeed = null; updateButtons(); scheduleRender(); });
  try {
    state.info = await api("/api/info");
  } catch (err) {
    showMessage(err.message);
    return;
  }
  const info = state.info;
  $("model-name").textContent = `Model: ${info.model} (${info.resolution} px).`;
  Object.assign($("age"), { min: info.age.min, max: info.age.max });
  $("children").max = info.max_siblings;
  $("anime-switch").hidden = !info.anime;
  const box = $("directions");
  for (const d of info.directions) box.append(slider(d.name, d.min, d.max, 0.1, 0));
  document.body.dataset.ready = "1";
}

start();
