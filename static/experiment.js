// The admin experiment page: polls GET /api/v1/experiments/{id}/live and redraws figures, the rater table and
// two line charts; the teacher-mode buttons switch the mode with PATCH /api/v1/experiments/{id}.

const root = document.getElementById("experiment");
const experimentId = root.dataset.experimentId;
const pollMs = Number(root.dataset.pollMs) || 3000;
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
const experimentPath = `/api/v1/experiments/${experimentId}`;
const modeButtons = [...document.querySelectorAll("#mode-switch button[data-mode]")];
const modeMessage = document.getElementById("mode-message");
const SVG_NS = "http://www.w3.org/2000/svg";
// Polls that began before the last switch may carry the old mode; their mode is not shown.
let modeSwitchedAt = 0;

function percent(agreement) {
  if (agreement.rate === null) return "—";
  return `${Math.round(agreement.rate * 100)}% (${agreement.matches}/${agreement.compared})`;
}

function svgNode(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// "Nice ticks": a step of 1, 2 or 5 times a power of ten giving about `count` intervals, and a domain widened to
// whole steps, so the axis reads 0, 2k, 4k… rather than 0, 1536, 3072…
function niceStep(span, count, integer) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= raw) ?? 10 * power;
  return integer ? Math.max(1, Math.round(step)) : step;
}

function niceScale(values, { min = null, max = null, integer = false, nonNegative = false, count = 4 } = {}) {
  let lo = min ?? Math.min(...values);
  let hi = max ?? Math.max(...values);
  if (lo === hi) {
    // One point (or a flat line): a small range around it, never −1…1 around a step count.
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  if (nonNegative) lo = Math.max(0, lo);
  const step = niceStep(hi - lo, count, integer);
  const start = min ?? Math.floor(lo / step) * step;
  const end = max ?? Math.ceil(hi / step) * step;
  const ticks = [];
  for (let tick = start; tick <= end + step * 1e-9; tick += step) ticks.push(Number(tick.toPrecision(12)));
  return { lo: start, hi: end, ticks, step };
}

function tickText(value, step) {
  if (Math.abs(value) >= 1000 && step >= 1000) {
    const decimals = Math.max(0, -Math.floor(Math.log10(step / 1000)));
    return `${(value / 1000).toFixed(decimals)}k`;
  }
  return value.toFixed(Math.max(0, -Math.floor(Math.log10(step))));
}

// A small hand-drawn line chart: points are [x, y]; nice ticks on both axes, each axis named.
function drawLineChart(svg, points, { xLabel, yLabel, xInteger = true, yMin = null, yMax = null }) {
  const width = 360;
  const height = 250;
  const margin = { left: 52, right: 22, top: 10, bottom: 42 };
  svg.replaceChildren();
  if (!points.length) {
    svg.append(svgNode("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "No data yet"));
    return;
  }
  const xScale = niceScale(points.map((p) => p[0]), { integer: xInteger, nonNegative: true });
  const yScale = niceScale(points.map((p) => p[1]), { min: yMin, max: yMax, count: 5 });
  const sx = (x) => margin.left + ((x - xScale.lo) / (xScale.hi - xScale.lo)) * (width - margin.left - margin.right);
  const sy = (y) => height - margin.bottom - ((y - yScale.lo) / (yScale.hi - yScale.lo)) * (height - margin.top - margin.bottom);
  const axes = svgNode("g", { class: "chart-axes" });
  for (const y of yScale.ticks) {
    axes.append(svgNode("line", { x1: margin.left, x2: width - margin.right, y1: sy(y), y2: sy(y), class: "chart-grid" }));
    axes.append(svgNode("text", { x: margin.left - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick-y" }, tickText(y, yScale.step)));
  }
  for (const x of xScale.ticks) {
    axes.append(svgNode("text", { x: sx(x), y: height - margin.bottom + 16, "text-anchor": "middle", class: "tick-x" }, tickText(x, xScale.step)));
  }
  axes.append(svgNode("text", { x: (margin.left + width - margin.right) / 2, y: height - 6, "text-anchor": "middle", class: "axis-label x-label" }, xLabel));
  const yMid = (margin.top + height - margin.bottom) / 2;
  axes.append(svgNode("text", { x: 14, y: yMid, "text-anchor": "middle", transform: `rotate(-90 14 ${yMid})`, class: "axis-label y-label" }, yLabel));
  svg.append(axes);
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  svg.append(svgNode("path", { d: path, class: "chart-line" }));
  if (points.length <= 60) {
    for (const [x, y] of points) svg.append(svgNode("circle", { cx: sx(x), cy: sy(y), r: 3, class: "chart-dot" }));
  }
}

function accuracyAgainstLabels(series) {
  // Accuracy is recorded per training step; labels/count at the same step gives the x axis.
  const accuracy = series["reward/val_accuracy"] || [];
  const labelsAtStep = new Map((series["labels/count"] || []).map(([step, count]) => [step, count]));
  if (accuracy.length && accuracy.every(([step]) => labelsAtStep.has(step))) {
    return { points: accuracy.map(([step, value]) => [labelsAtStep.get(step), value]), xLabel: "labels trained on" };
  }
  return { points: accuracy, xLabel: "env steps" };
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function showMode(mode) {
  for (const button of modeButtons) {
    const current = button.dataset.mode === mode;
    button.classList.toggle("active", current);
    button.setAttribute("aria-pressed", String(current));
    if (current) document.getElementById("mode-hint").textContent = `${button.textContent}: ${button.dataset.hint}.`;
  }
  const tile = root.querySelector('[data-field="teacher_mode"]');
  if (tile) tile.textContent = mode;
}

function render(live, { withMode = true } = {}) {
  if (withMode) showMode(live.experiment.teacher_mode);
  const fields = {
    status: live.experiment.status,
    // The budget counts pairs asked; each wants labels_per_pair labels.
    labels: live.experiment.label_budget
      ? `${live.counts.labels} / ${live.experiment.label_budget * live.experiment.labels_per_pair}`
      : String(live.counts.labels),
    pairs_pending: String(live.counts.pairs_pending),
    pairs_complete: String(live.counts.pairs_complete),
    checkpoint: live.experiment.latest_checkpoint_step === null ? "—" : `${live.experiment.latest_checkpoint_step} steps`,
    worker: live.experiment.owner_worker || "none",
    between_raters: percent(live.between_raters),
    with_teacher: percent(live.with_teacher),
  };
  for (const [name, value] of Object.entries(fields)) {
    const node = root.querySelector(`[data-field="${name}"]`);
    if (node) node.textContent = value;
  }
  const rows = live.raters.map((rater) => {
    const tr = document.createElement("tr");
    tr.dataset.raterId = String(rater.rater_id);
    const name = rater.kind === "human" ? rater.name : `${rater.name} (${rater.kind})`;
    const mean = rater.mean_response_ms === null ? "—" : `${(rater.mean_response_ms / 1000).toFixed(1)} s`;
    const actions = document.createElement("td");
    if (rater.kind === "human" && rater.labels > 0) {
      actions.append(smallButton("drop-labels", "Drop labels", () => dropLabels(rater)));
    }
    if (rater.kind === "human") {
      actions.append(smallButton("revoke-rater", "Revoke invite", () => revokeRater(rater)));
    }
    tr.append(cell(name), cell(String(rater.labels)), cell(String(rater.skips)), cell(percent(rater.with_others)),
      cell(percent(rater.with_teacher)), cell(mean), actions);
    return tr;
  });
  document.getElementById("rater-rows").replaceChildren(...rows);
  showStatus(live.experiment.status, live.experiment.error);
  drawLineChart(document.getElementById("plot-return"), live.series["env/true_return"] || [],
    { xLabel: "env steps", yLabel: "true return" });
  const { points, xLabel } = accuracyAgainstLabels(live.series);
  drawLineChart(document.getElementById("plot-accuracy"), points,
    { xLabel, yLabel: "accuracy", yMin: 0, yMax: 1, xInteger: true });
}

async function switchMode(mode) {
  modeButtons.forEach((button) => { button.disabled = true; });
  modeMessage.classList.remove("error");
  modeMessage.textContent = "Switching…";
  try {
    const response = await fetch(experimentPath, {
      method: "PATCH",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
      body: JSON.stringify({ teacher_mode: mode }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `the server answered ${response.status}`);
    modeSwitchedAt = performance.now();
    showMode(body.teacher_mode);
    modeMessage.textContent = `Switched to ${body.teacher_mode}.`;
    pollQueue();
  } catch (error) {
    modeMessage.classList.add("error");
    modeMessage.textContent = `Could not switch the mode (${error.message}).`;
  } finally {
    modeButtons.forEach((button) => { button.disabled = false; });
  }
}

for (const button of modeButtons) button.addEventListener("click", () => switchMode(button.dataset.mode));

async function refreshLive() {
  const startedAt = performance.now();
  try {
    const response = await fetch(`${experimentPath}/live`, { credentials: "same-origin" });
    if (response.ok) {
      render(await response.json(), { withMode: startedAt > modeSwitchedAt });
      document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } else {
      document.getElementById("updated").textContent = `Update failed (${response.status}); retrying.`;
    }
  } catch {
    document.getElementById("updated").textContent = "Server unreachable; retrying.";
  }
}

async function poll() {
  await refreshLive();
  setTimeout(poll, pollMs);
}

// ---- the run: pause / resume (PATCH status), the queue, invites, the policy clip, disagreements, dropped labels

const pauseButton = document.getElementById("pause-resume");
const runMessage = document.getElementById("run-message");

async function callApi(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `the server answered ${response.status}`);
  return data;
}

function showStatus(status, error = null) {
  pauseButton.dataset.status = status;
  pauseButton.textContent = { paused: "Resume", failed: "Retry" }[status] || "Pause";
  pauseButton.disabled = status === "done";
  const tile = root.querySelector('[data-field="status"]');
  if (tile) tile.textContent = status;
  // A failed experiment says why, in the worker's words (an env that does not import, unsupported spaces).
  const failure = document.getElementById("failure");
  failure.hidden = status !== "failed";
  if (status === "failed") failure.querySelector('[data-field="error"]').textContent = error || "";
}

pauseButton.addEventListener("click", async () => {
  // Retry sets a failed experiment back to "created", which a worker takes up again.
  const target = { paused: "running", failed: "created" }[pauseButton.dataset.status] || "paused";
  pauseButton.disabled = true;
  try {
    const body = await callApi("PATCH", experimentPath, { status: target });
    showStatus(body.status, body.error);
    runMessage.classList.remove("error");
    runMessage.textContent = {
      paused: "Paused: the worker checkpoints and stops training within a second; raters can still answer waiting pairs.",
      created: "Retrying: a worker tries the experiment again.",
    }[body.status] || "Resumed: a worker picks the experiment up from its last checkpoint.";
  } catch (error) {
    runMessage.classList.add("error");
    runMessage.textContent = `Could not change the status (${error.message}).`;
  } finally {
    pauseButton.disabled = pauseButton.dataset.status === "done";
  }
});

function currentMode() {
  const active = modeButtons.find((button) => button.classList.contains("active"));
  return active ? active.dataset.mode : null;
}

function secondsLeft(iso) {
  return Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
}

function showQueue(queue) {
  document.getElementById("queue-pending").textContent = queue.pairs_pending === 1 ? "1 pair" : `${queue.pairs_pending} pairs`;
  document.getElementById("queue-held").textContent = String(new Set(queue.leases.map((l) => l.pair_id)).size);
  const rows = queue.leases.map((lease) => {
    const tr = document.createElement("tr");
    tr.dataset.leaseId = String(lease.lease_id);
    const who = lease.rater_kind === "human" ? lease.rater_name : `${lease.rater_name} (${lease.rater_kind})`;
    const until = `${new Date(lease.expires_at).toLocaleTimeString()} (${secondsLeft(lease.expires_at)} s left)`;
    const actions = document.createElement("td");
    actions.append(smallButton("release-lease", "Release", async () => {
      await callApi("DELETE", `${experimentPath}/leases/${lease.lease_id}`);
      pollQueue();
    }));
    tr.append(cell(`#${lease.pair_id}`), cell(who), cell(until), actions);
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell("Nobody holds a pair.");
    td.colSpan = 4;
    td.className = "muted";
    tr.append(td);
    rows.push(tr);
  }
  document.getElementById("queue-rows").replaceChildren(...rows);
  // Say what a switch to the synthetic teacher does about pairs raters hold now.
  const held = document.getElementById("mode-held");
  const humans = queue.leases.filter((lease) => lease.rater_kind === "human");
  const mode = currentMode();
  if (mode !== "human" && queue.held_by_humans > 0) {
    const longest = Math.max(...humans.map((lease) => secondsLeft(lease.expires_at)));
    const pairs = queue.held_by_humans === 1 ? "1 pair held by a rater" : `${queue.held_by_humans} pairs held by raters`;
    held.textContent = `${pairs} will be answered by the synthetic teacher if not labeled within ${longest} s `
      + `(a lease lasts ${Math.round(queue.lease_seconds)} s)${mode === "mixed" ? " and the human timeout" : ""}.`;
  } else {
    held.textContent = "";
  }
}

async function pollQueue() {
  try {
    showQueue(await callApi("GET", `${experimentPath}/queue`));
  } catch {
    // shown again at the next poll
  }
}

const inviteForm = document.getElementById("invite-form");
inviteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("invite-message");
  const name = inviteForm.elements.namedItem("name").value.trim();
  try {
    const invite = await callApi("POST", "/api/v1/invites", { name, experiment_ids: [Number(experimentId)] });
    const link = new URL(invite.invite_url, window.location.origin).href;
    document.getElementById("invite-for").textContent = invite.name;
    document.getElementById("invite-link").value = link;
    document.getElementById("invite-result").hidden = false;
    message.classList.remove("error");
    message.textContent = "";
    inviteForm.reset();
    refreshLive();
  } catch (error) {
    message.classList.add("error");
    message.textContent = `Could not invite (${error.message}).`;
  }
});

document.getElementById("copy-invite").addEventListener("click", async () => {
  const input = document.getElementById("invite-link");
  const message = document.getElementById("invite-message");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand("copy"); // the clipboard API needs HTTPS or localhost
  }
  message.classList.remove("error");
  message.textContent = "Copied.";
});

function smallButton(className, text, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `${className} small`;
  button.textContent = text;
  button.addEventListener("click", onClick);
  return button;
}

async function revokeRater(rater) {
  const message = document.getElementById("drop-message");
  if (!window.confirm(`Revoke ${rater.name}'s invite? Their link stops working and the pairs they hold go back `
    + "to the queue at once; their labels stay.")) return;
  try {
    await callApi("POST", `/api/v1/raters/${rater.rater_id}/revoke`);
    message.classList.remove("error");
    message.textContent = `Revoked ${rater.name}'s invite.`;
    pollQueue();
  } catch (error) {
    message.classList.add("error");
    message.textContent = `Could not revoke the invite (${error.message}).`;
  }
}

async function dropLabels(rater) {
  const message = document.getElementById("drop-message");
  const question = `Drop all ${rater.labels} labels of ${rater.name}? They are removed from the data and from `
    + "training, and their pairs wait for labels again. The labels export keeps nothing of them.";
  if (!window.confirm(question)) return;
  try {
    const result = await callApi("POST", `${experimentPath}/raters/${rater.rater_id}/labels/drop`);
    message.classList.remove("error");
    message.textContent = `Dropped ${result.dropped} labels of ${rater.name}.`;
    refreshLive();
    pollDisagreements();
  } catch (error) {
    message.classList.add("error");
    message.textContent = `Could not drop the labels (${error.message}).`;
  }
}

const CHOICE_TEXT = { left: "left is better", right: "right is better", equal: "equally good", skip: "can't tell" };

function clipVideo(segment, side) {
  if (segment.clip_status !== "ready") {
    // Pairs asked in oracle mode have no clips: say so rather than ask for files that are not there.
    const missing = document.createElement("div");
    missing.className = "no-clip muted small";
    missing.textContent = `${side}: no clip (${segment.clip_status})`;
    return missing;
  }
  const video = document.createElement("video");
  video.muted = true;
  video.loop = true;
  video.playsInline = true;
  video.autoplay = true;
  video.preload = "auto";
  video.poster = segment.poster_url;
  video.src = segment.clip_url;
  video.setAttribute("aria-label", `${side} clip`);
  return video;
}

async function pollDisagreements() {
  if (Number(root.dataset.labelsPerPair) < 2) return;
  try {
    const items = await callApi("GET", `${experimentPath}/disagreements?limit=10`);
    const list = document.getElementById("disagreement-list");
    const shown = new Map([...list.children].map((item) => [item.dataset.key, item]));
    const nodes = items.map((item) => {
      const key = `${item.pair_id}:${item.answers.map((a) => `${a.rater_id}=${a.choice}`).join(",")}`;
      if (shown.has(key)) return shown.get(key); // keep playing videos as they are
      const li = document.createElement("li");
      li.className = "disagreement";
      li.dataset.key = key;
      li.dataset.pairId = String(item.pair_id);
      const clips = document.createElement("div");
      clips.className = "disagreement-clips";
      clips.append(clipVideo(item.left, "Left"), clipVideo(item.right, "Right"));
      const answers = document.createElement("ul");
      answers.className = "answers";
      for (const answer of item.answers) {
        const entry = document.createElement("li");
        entry.textContent = `${answer.rater_name}: ${CHOICE_TEXT[answer.choice]}`;
        answers.append(entry);
      }
      if (item.teacher_choice) {
        const entry = document.createElement("li");
        entry.className = "muted";
        entry.textContent = `true reward: ${CHOICE_TEXT[item.teacher_choice]}`;
        answers.append(entry);
      }
      const title = document.createElement("p");
      title.className = "small";
      title.textContent = `Pair #${item.pair_id}`;
      li.append(title, clips, answers);
      return li;
    });
    list.replaceChildren(...nodes);
    document.getElementById("disagreements-empty").hidden = items.length > 0;
  } catch {
    // shown again at the next poll
  }
}

let policyStep = null;
async function pollPolicy() {
  try {
    const response = await fetch(`${experimentPath}/policy`, { credentials: "same-origin" });
    if (response.status !== 200) return; // 204: not rendered yet
    const info = await response.json();
    if (info.step === policyStep) return;
    policyStep = info.step;
    const video = document.getElementById("policy-video");
    video.src = info.clip_url;
    video.dataset.step = String(info.step);
    video.play().catch(() => {});
    document.getElementById("policy-caption").textContent =
      `after ${info.step.toLocaleString("en")} env steps and ${info.labels_used} labels`;
  } catch {
    // shown again at the next poll
  }
}

function pollExtras() {
  Promise.all([pollQueue(), pollPolicy(), pollDisagreements()]).finally(() => setTimeout(pollExtras, pollMs));
}

render(JSON.parse(document.getElementById("initial-data").textContent));
setTimeout(poll, pollMs);
pollExtras();
