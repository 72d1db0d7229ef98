// The labeling page: two synced looping clips, choices by button or key, undo, and prefetching so the next
// pair is already loaded (its clips fetched into blob URLs and decoded) when a choice is made. The counters come
// from the server (GET .../progress), so a reload keeps them; the rater's last answers can be changed below.

const root = document.getElementById("labeler");
const experimentId = root.dataset.experimentId;
const pollMs = Number(root.dataset.pollMs) || 2000;
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
const experimentPath = `/api/v1/experiments/${experimentId}`;
const PAIRS_AHEAD = 2; // leased and loaded beyond the one on screen
const SLOW_RATE = 0.5;
const MAX_DRIFT_S = 0.08;
// A new pair takes no choice for this long after both its clips start: a key pressed (or a click meant) for the
// previous pair cannot label one the rater has not seen.
const GUARD_MS = 400;
const CHOICE_WORDS = { left: "Left is better", right: "Right is better", equal: "Equally good", skip: "Can't tell" };

const el = (id) => document.getElementById(id);
const pairView = el("pair-view");
const waitingView = el("waiting-view");
const loadingView = el("loading-view");
const slots = [el("slot-left"), el("slot-right")];
const playPauseButton = el("play-pause");
const slowButton = el("slow");
const undoButton = el("undo");
const message = el("message");
const historyBox = el("history");

// Upcoming videos live here, off-screen but in the document, so the browser loads and decodes them.
const prefetchArea = document.createElement("div");
prefetchArea.className = "prefetch-area";
prefetchArea.setAttribute("aria-hidden", "true");
document.body.append(prefetchArea);

const state = {
  current: null, // the pair on screen
  previous: null, // the pair answered last, kept so an undo can show it again at once
  upcoming: [],
  sessionCount: Number(el("session-count").textContent) || 0, // the rater's labels, as the server counted them
  leasing: false,
  pollTimer: null,
  choiceAt: null, // performance.now() of the choice whose next pair is starting
  slow: false,
  paused: false,
  writes: Promise.resolve(), // labels and undos go to the server one at a time, in order
};

// Read by the browser test: milliseconds from a choice to the next pair's clips playing.
window.rlhfLabeler = { latencies: [], state };

// The REST API, authenticated by the session cookie; writes carry the CSRF token. 204 (no content) is null.
async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || `request failed (${response.status})`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// The server's counts, read once the choices sent so far are answered (so they include them).
async function refreshProgress() {
  try {
    const writes = state.writes;
    await writes.catch(() => {});
    const data = await api("GET", `${experimentPath}/progress`);
    el("waiting-count").textContent = String(data.pairs_waiting);
    if (state.writes === writes) setSessionCount(data.labels); // else a newer choice is not counted there yet
    undoButton.disabled = state.sessionCount === 0;
    showWaitingText(data);
  } catch {
    // The counts are hints; the next refresh corrects them.
  }
  if (historyBox.open) loadHistory();
}

function showWaitingText(progress) {
  // Say what is true: nothing left, or pairs other raters hold for now.
  const others = progress.held_by_others;
  if (others > 0) {
    el("waiting-heading").textContent = "Others are labeling the rest";
    el("waiting-text").textContent = `${others} ${others === 1 ? "pair is" : "pairs are"} being labeled by others; `
      + "you'll get the next one that comes free. This page checks every few seconds, so you can leave it open.";
  } else {
    el("waiting-heading").textContent = "All caught up";
    el("waiting-text").textContent = "No pairs are waiting for you right now. New ones appear here by themselves: "
      + "this page checks every few seconds, so you can leave it open.";
  }
}

function newIdempotencyKey(pairId) {
  // Random per choice (lease ids can be reused by the database); getRandomValues works without HTTPS.
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `pair-${pairId}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function queueWrite(task) {
  const result = state.writes.catch(() => {}).then(task);
  state.writes = result;
  return result;
}

function showMessage(text, isError = false) {
  message.textContent = text;
  message.classList.toggle("error", isError);
}

function setSessionCount(count) {
  state.sessionCount = count;
  el("session-count").textContent = String(count);
}

function makeVideo(label) {
  const video = document.createElement("video");
  video.muted = true;
  video.loop = true;
  video.playsInline = true;
  video.preload = "auto";
  video.setAttribute("aria-label", `${label} clip`);
  return video;
}

function whenPlayable(video) {
  // Resolves (never rejects) once the clip can play through, or failed: a bad clip must not block the page.
  return new Promise((resolve) => {
    if (video.readyState >= 4 || video.error) return resolve();
    const done = () => resolve();
    video.addEventListener("canplaythrough", done, { once: true });
    video.addEventListener("error", done, { once: true });
  });
}

async function loadClip(video, segment) {
  try {
    const response = await fetch(segment.clip_url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`clip ${segment.id}: ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    video.dataset.blobUrl = url;
    video.src = url;
  } catch {
    video.src = segment.clip_url; // let the element report the problem through its error event
  }
  await whenPlayable(video);
}

function preparePair(lease, reuse = null) {
  const pair = reuse
    ? { ...reuse, lease }
    : { lease, videos: [makeVideo("Left"), makeVideo("Right")], shownAt: null };
  if (!reuse) {
    pair.videos.forEach((video) => prefetchArea.append(video));
    pair.ready = Promise.all([loadClip(pair.videos[0], lease.left), loadClip(pair.videos[1], lease.right)]);
  }
  return pair;
}

function releasePair(pair) {
  for (const video of pair.videos) {
    video.pause();
    if (video.dataset.blobUrl) URL.revokeObjectURL(video.dataset.blobUrl);
    video.removeAttribute("src");
    video.remove();
  }
}

function showView(view) {
  pairView.hidden = view !== "pair";
  waitingView.hidden = view !== "waiting";
  loadingView.hidden = view !== "loading";
}

async function playBoth(pair) {
  for (const video of pair.videos) video.playbackRate = state.slow ? SLOW_RATE : 1;
  if (state.paused) return;
  await Promise.all(pair.videos.map((video) => video.play().catch(() => {})));
}

function showNext() {
  const pair = state.upcoming.shift() || null;
  state.current = pair;
  delete pairView.dataset.accepting;
  if (!pair) {
    showView("waiting");
    schedulePoll();
    return;
  }
  pair.videos.forEach((video, i) => slots[i].replaceChildren(video));
  pairView.dataset.pairId = String(pair.lease.pair_id);
  showView("pair");
  for (const video of pair.videos) video.currentTime = 0;
  const choiceAt = state.choiceAt;
  state.choiceAt = null;
  pair.acceptAt = Infinity; // no choice before both clips play
  pair.ready.then(() => playBoth(pair)).then(() => {
    if (state.current !== pair) return;
    pair.shownAt = performance.now();
    pair.acceptAt = pair.shownAt + GUARD_MS;
    if (choiceAt !== null) window.rlhfLabeler.latencies.push(pair.shownAt - choiceAt);
    setTimeout(() => {
      if (state.current === pair) pairView.dataset.accepting = "true";
    }, GUARD_MS);
  });
}

function schedulePoll() {
  if (state.pollTimer !== null) return;
  state.pollTimer = setTimeout(() => {
    state.pollTimer = null;
    fillQueue();
  }, pollMs);
}

async function fillQueue() {
  if (state.leasing) return;
  state.leasing = true;
  let exhausted = false;
  let leased = false;
  try {
    while (state.upcoming.length < PAIRS_AHEAD) {
      // Asked again, the server returns the pairs this rater holds first: name those the page has already.
      const shown = [state.current, state.previous, ...state.upcoming].filter(Boolean);
      const exclude = new URLSearchParams(shown.map((pair) => ["exclude", pair.lease.pair_id]));
      const lease = await api("POST", `${experimentPath}/leases?${exclude}`);
      if (!lease) {
        exhausted = true;
        break;
      }
      leased = true;
      state.upcoming.push(preparePair(lease));
      if (!state.current) showNext();
    }
  } catch (error) {
    exhausted = true;
    showMessage(`Could not fetch the next pair (${error.message}); retrying.`, true);
  } finally {
    state.leasing = false;
  }
  if (!state.current) showView("waiting");
  // The count rendered with the page is stale once pairs have been leased since.
  if (exhausted || leased) refreshProgress();
  if (exhausted) schedulePoll(); // keep looking so new pairs appear by themselves
}

function choose(choice) {
  const pair = state.current;
  if (!pair) return;
  const now = performance.now();
  if (now < pair.acceptAt) return; // just appeared (or not playing yet): this press was meant for another pair
  // Focus leaves the button, so Enter (or Space) cannot repeat the choice on the next pair.
  pairView.focus({ preventScroll: true });
  const responseMs = Math.max(0, Math.round(now - (pair.shownAt ?? now)));
  state.choiceAt = now;
  setSessionCount(state.sessionCount + 1);
  undoButton.disabled = false;
  const body = {
    pair_id: pair.lease.pair_id,
    choice,
    response_time_ms: responseMs,
    idempotency_key: newIdempotencyKey(pair.lease.pair_id),
  };
  queueWrite(() => api("POST", "/api/v1/labels", body))
    .then(refreshProgress)
    .catch((error) => {
      setSessionCount(state.sessionCount - 1);
      showMessage(`That choice was not saved: ${error.message}`, true);
    });
  for (const video of pair.videos) video.pause();
  if (state.previous) releasePair(state.previous);
  state.previous = pair;
  showMessage("");
  showNext();
  fillQueue();
}

async function undo() {
  undoButton.disabled = true;
  pairView.focus({ preventScroll: true });
  try {
    const data = await queueWrite(() => api("POST", `${experimentPath}/labels/undo`));
    setSessionCount(Math.max(0, state.sessionCount - 1));
    refreshProgress();
    const previous = state.previous;
    const reuse = previous && previous.lease.pair_id === data.lease.pair_id ? previous : null;
    if (reuse) state.previous = null;
    const pair = preparePair(data.lease, reuse);
    if (state.current) {
      for (const video of state.current.videos) video.pause();
      state.upcoming.unshift(state.current);
    }
    state.upcoming.unshift(pair);
    showNext();
    showMessage(`Undone: pair ${data.label.pair_id} (${data.label.choice}). Choose again.`);
  } catch (error) {
    showMessage(error.status === 404 ? "Nothing to undo." : `Undo failed: ${error.message}`, true);
  } finally {
    undoButton.disabled = state.sessionCount === 0;
  }
}

function restart() {
  const pair = state.current;
  if (!pair) return;
  for (const video of pair.videos) video.currentTime = 0;
  state.paused = false;
  showPlayPause();
  playBoth(pair);
}

function togglePause() {
  const pair = state.current;
  state.paused = !state.paused;
  showPlayPause();
  if (!pair) return;
  if (state.paused) pair.videos.forEach((video) => video.pause());
  else playBoth(pair);
}

function showPlayPause() {
  playPauseButton.firstChild.textContent = state.paused ? "Play " : "Pause ";
}

function toggleSlow() {
  state.slow = !state.slow;
  slowButton.setAttribute("aria-pressed", String(state.slow));
  slowButton.classList.toggle("active", state.slow);
  if (state.current) for (const video of state.current.videos) video.playbackRate = state.slow ? SLOW_RATE : 1;
}

// Keep the right clip on the left clip's clock (they loop separately and can drift apart).
slots[0].addEventListener(
  "timeupdate",
  (event) => {
    const pair = state.current;
    if (!pair || event.target !== pair.videos[0]) return;
    const [left, right] = pair.videos;
    if (!left.paused && Math.abs(left.currentTime - right.currentTime) > MAX_DRIFT_S) {
      right.currentTime = left.currentTime;
    }
  },
  true,
);

for (const slot of slots) {
  slot.addEventListener(
    "error",
    (event) => {
      if (event.target.tagName !== "VIDEO") return;
      showMessage("A clip could not be played; choose “Can't tell” to move on.", true);
    },
    true,
  );
}

document.querySelectorAll("button.choice").forEach((button) => {
  button.addEventListener("click", () => choose(button.dataset.choice));
});
playPauseButton.addEventListener("click", togglePause);
el("restart").addEventListener("click", restart);
slowButton.addEventListener("click", toggleSlow);
undoButton.addEventListener("click", undo);

const KEY_CHOICES = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "equal", ArrowDown: "skip" };

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest && event.target.closest("input, textarea, select")) return;
  const key = event.key;
  if (key in KEY_CHOICES) {
    event.preventDefault();
    if (!event.repeat) choose(KEY_CHOICES[key]);
  } else if (key === " " || key === "r" || key === "R") {
    event.preventDefault();
    restart();
  } else if (key === "u" || key === "U" || key === "Backspace") {
    event.preventDefault();
    if (!event.repeat && !undoButton.disabled) undo();
  } else if (key === "p" || key === "P") {
    togglePause();
  } else if (key === "s" || key === "S") {
    toggleSlow();
  }
});

// ---- the rater's last answers, each changeable (PUT /api/v1/labels/{id}: a new label replaces it)

function historyButton(entry, choice) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "history-choice";
  button.dataset.choice = choice;
  button.textContent = CHOICE_WORDS[choice];
  const current = entry.choice === choice;
  button.setAttribute("aria-pressed", String(current));
  button.classList.toggle("active", current);
  button.disabled = !entry.changeable;
  button.addEventListener("click", () => changeLabel(entry, choice));
  return button;
}

function historyItem(entry) {
  const item = document.createElement("li");
  item.className = "history-item";
  item.dataset.labelId = String(entry.label_id);
  item.dataset.pairId = String(entry.pair_id);
  item.dataset.choice = entry.choice;
  const thumbs = document.createElement("div");
  thumbs.className = "history-thumbs";
  for (const [side, segment] of [["Left", entry.left], ["Right", entry.right]]) {
    if (segment.clip_status !== "ready") {
      const missing = document.createElement("span");
      missing.className = "no-clip muted small";
      missing.textContent = "no clip";
      thumbs.append(missing);
      continue;
    }
    const image = document.createElement("img");
    image.src = segment.poster_url;
    image.alt = `${side} clip of pair ${entry.pair_id}`;
    image.loading = "lazy";
    thumbs.append(image);
  }
  const buttons = document.createElement("div");
  buttons.className = "history-choices";
  buttons.setAttribute("role", "group");
  buttons.setAttribute("aria-label", `Your answer for pair ${entry.pair_id}`);
  for (const choice of ["left", "equal", "skip", "right"]) buttons.append(historyButton(entry, choice));
  const when = document.createElement("span");
  when.className = "muted small history-when";
  when.textContent = `Pair ${entry.pair_id} · ${new Date(entry.created_at).toLocaleTimeString()}`;
  item.append(thumbs, when, buttons);
  return item;
}

async function loadHistory() {
  try {
    const entries = await api("GET", `${experimentPath}/labels/mine?limit=10`);
    el("history-list").replaceChildren(...entries.map(historyItem));
    el("history-empty").hidden = entries.length > 0;
  } catch (error) {
    showMessage(`Could not load your answers (${error.message}).`, true);
  }
}

async function changeLabel(entry, choice) {
  if (entry.choice === choice) return;
  try {
    await queueWrite(() => api("PUT", `/api/v1/labels/${entry.label_id}`, { choice }));
    showMessage(`Changed pair ${entry.pair_id} to “${CHOICE_WORDS[choice]}”.`);
  } catch (error) {
    showMessage(`That change was not saved: ${error.message}`, true);
  }
  loadHistory();
}

historyBox.addEventListener("toggle", () => {
  if (historyBox.open) loadHistory();
});

// Leaving the page hands its pairs back at once, so nobody waits for the lease to expire (it stays the backstop
// when the beacon never arrives). A reload or a second tab gets the pairs this rater still holds first.
// One beacon for all of them: released together, so a reload finds all or none still held, never a mix.
window.addEventListener("pagehide", () => {
  const held = [state.current, ...state.upcoming].filter(Boolean);
  if (held.length === 0) return;
  const body = new URLSearchParams({ csrf_token: csrfToken });
  for (const pair of held) {
    body.append("lease_id", pair.lease.lease_id);
    body.append("expires_at", pair.lease.expires_at);
  }
  navigator.sendBeacon("/api/v1/leases/release", body);
});
// Restored from the back-forward cache, the page's pairs were released on the way out: start afresh.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) location.reload();
});

undoButton.disabled = state.sessionCount === 0;
fillQueue();
