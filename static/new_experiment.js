// The new-experiment form: fills the spaces from the env catalog (GET /api/v1/envs serves the same list) and
// creates the experiment with POST /api/v1/experiments, showing the field the server names on a 4xx.

const form = document.getElementById("new-experiment");
const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
const catalog = JSON.parse(document.getElementById("env-catalog").textContent);
const message = document.getElementById("form-message");
const field = (name) => form.elements.namedItem(name);

// "Your own env": the web process never imports an env, so its name and spaces are typed in; the worker
// checks them when it starts the experiment.
const OWN_ENV_DEFAULTS = { segment_length: 50, label_budget: 100, renders_clips: true };

function ownEnv() {
  return field("env_id").value === "";
}

function selectedEnv() {
  if (!ownEnv()) return catalog[field("env_id").value];
  const size = integer("own_action_size");
  const discrete = field("own_action_kind").value === "discrete";
  return {
    ...OWN_ENV_DEFAULTS,
    obs_shape: [integer("own_obs_size")],
    action_shape: discrete ? [] : [size],
    action_dtype: discrete ? "int64" : "float32",
    num_actions: discrete ? size : null,
  };
}

function showOwnEnv() {
  for (const node of form.querySelectorAll("[data-own-env]")) node.hidden = !ownEnv();
}

function applyEnvDefaults() {
  showOwnEnv();
  const env = selectedEnv();
  field("segment_length").value = String(env.segment_length);
  if (!field("label_budget").value) field("label_budget").value = String(env.label_budget);
  // An env whose rollouts cannot be drawn has no clips for raters: only the synthetic teacher can label it.
  for (const option of field("teacher_mode").options) option.disabled = !env.renders_clips && option.value !== "oracle";
  if (!env.renders_clips) field("teacher_mode").value = "oracle";
}

function showTimeout() {
  const mixed = field("teacher_mode").value === "mixed";
  for (const id of ["human_timeout_seconds", "timeout-hint"]) {
    const node = document.getElementById(id);
    node.hidden = !mixed;
    if (node.labels) for (const label of node.labels) label.hidden = !mixed;
  }
}

function integer(name) {
  const text = field(name).value.trim();
  return text === "" ? null : Number(text);
}

function body() {
  const env = selectedEnv();
  const mode = field("teacher_mode").value;
  return {
    name: field("name").value.trim(),
    env_id: ownEnv() ? field("own_env_id").value.trim() : field("env_id").value,
    teacher_mode: mode,
    human_timeout_seconds: mode === "mixed" ? integer("human_timeout_seconds") : null,
    label_budget: integer("label_budget"),
    timestep_budget: integer("timestep_budget"),
    labels_per_pair: integer("labels_per_pair"),
    instructions: field("instructions").value.trim(),
    obs_shape: env.obs_shape,
    action_shape: env.action_shape,
    action_dtype: env.action_dtype,
    num_actions: env.num_actions,
    // The worker trains experiments whose config has "run" (worker.config.RunConfig fields).
    config: { run: { segment_length: integer("segment_length") } },
  };
}

function markInvalid(name) {
  for (const element of form.elements) element.removeAttribute("aria-invalid");
  const own = { env_id: "own_env_id", obs_shape: "own_obs_size", action_shape: "own_action_size", num_actions: "own_action_size" };
  let key = name && name.startsWith("config.run.") ? name.slice("config.run.".length) : name;
  if (key && ownEnv()) key = own[key.split(".")[0]] || key;
  const input = key ? field(key) : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

function ownEnvProblem() {
  if (!ownEnv()) return null;
  if (!/^[\w.]+:[\w./-]+$/.test(field("own_env_id").value.trim())) {
    return ["own_env_id", "env_id: your env as module:ClassName (or module:Id)"];
  }
  for (const name of ["own_obs_size", "own_action_size"]) {
    if (!(integer(name) >= 1)) return [name, `${name.replace("own_", "")}: a whole number, at least 1`];
  }
  return null;
}

async function submit(event) {
  event.preventDefault();
  const problem = ownEnvProblem();
  if (problem) {
    markInvalid(problem[0]);
    message.classList.add("error");
    message.textContent = problem[1];
    return;
  }
  const segmentLength = integer("segment_length");
  if (!(segmentLength >= 2 && segmentLength <= 1000)) {
    markInvalid("segment_length");
    message.classList.add("error");
    message.textContent = "segment_length: must be a whole number from 2 to 1000";
    return;
  }
  message.classList.remove("error");
  message.textContent = "Creating…";
  const response = await fetch("/api/v1/experiments", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body()),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    markInvalid(data.field);
    message.classList.add("error");
    message.textContent = data.detail || `The server answered ${response.status}.`;
    return;
  }
  window.location.assign(`/admin/experiments/${data.id}`);
}

field("env_id").addEventListener("change", () => {
  field("label_budget").value = "";
  applyEnvDefaults();
});
field("teacher_mode").addEventListener("change", showTimeout);
form.addEventListener("submit", submit);
form.addEventListener("input", (event) => {
  // A corrected field is no longer marked; the message goes with it.
  if (event.target.getAttribute("aria-invalid") === "true") {
    event.target.removeAttribute("aria-invalid");
    message.textContent = "";
  }
});
applyEnvDefaults();
showTimeout();
