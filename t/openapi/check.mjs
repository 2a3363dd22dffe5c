// Checks docs/openapi.json for t/api_openapi.t: the document is valid
// OpenAPI 3.1 (@seriousme/openapi-schema-validator); its paths and methods
// are the module's routes, both ways, read from the C route table and the
// handlers and probed on the running module; its error codes are the C
// error table; docs/api.md's examples and the module's real answers
// validate against it (ajv, JSON Schema 2020-12, with ajv-formats).
//
//   node check.mjs <config.json>
//
// config: { top, base, admin: [name, password], user: [name, password],
//           ids: { user, group, device, key, session } }
// Prints one line per check: "ok\t<name>" or "not ok\t<name>\t<diag>".

import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const top = cfg.top;
const doc = JSON.parse(readFileSync(`${top}/docs/openapi.json`, "utf8"));
const METHODS = ["get", "post", "put", "patch", "delete"];
const MISSING_ID = "999999999";
const MISSING_SESSION = "00000000-0000-4000-8000-000000000000";

let failures = 0;

function report(ok, name, diag) {
  const clean = (s) => String(s).replace(/[\t\r\n]+/g, " ");
  if (ok) {
    console.log(`ok\t${clean(name)}`);
  } else {
    failures++;
    console.log(`not ok\t${clean(name)}\t${clean(diag ?? "")}`);
  }
}

// --- schemas: the document's components as one JSON Schema --------------

const ajv = new Ajv2020({ strict: true, strictRequired: false, strictTypes: false,
                        allErrors: true });
addFormats(ajv);
ajv.addKeyword({ keyword: "example" });

const SCHEMAS_ID = "urn:segura:openapi:schemas";

function rewriteRefs(v) {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      o[k] = k === "$ref" && typeof x === "string"
        && x.startsWith("#/components/schemas/")
        ? `${SCHEMAS_ID}#/$defs/${x.slice("#/components/schemas/".length)}`
        : rewriteRefs(x);
    }
    return o;
  }
  return v;
}

let schemasOk = true;
try {
  ajv.addSchema({ $id: SCHEMAS_ID,
                  $defs: rewriteRefs(doc.components?.schemas ?? {}) });
  for (const name of Object.keys(doc.components?.schemas ?? {})) {
    ajv.getSchema(`${SCHEMAS_ID}#/$defs/${name}`);
  }
} catch (e) {
  schemasOk = false;
  report(false, "the component schemas compile (ajv, 2020-12, strict schema)",
         e.message);
}
if (schemasOk) {
  report(true, "the component schemas compile (ajv, 2020-12, strict schema)");
}

const compiled = new Map();

function validator(schema) {
  const key = JSON.stringify(schema);
  if (!compiled.has(key)) compiled.set(key, ajv.compile(rewriteRefs(schema)));
  return compiled.get(key);
}

function validate(schema, value) {
  const v = validator(schema);
  if (v(value)) return null;
  return ajv.errorsText(v.errors, { separator: "; " });
}

function deref(x) {
  // a $ref into components (responses, parameters, requestBodies)
  while (x && x.$ref && x.$ref.startsWith("#/components/")) {
    const [, kind, name] = x.$ref.match(/^#\/components\/(\w+)\/(.+)$/);
    x = doc.components[kind][name];
  }
  return x;
}

// --- (a) the document is OpenAPI 3.1 -------------------------------------

{
  const v = new Validator();
  const res = await v.validate(structuredClone(doc));
  report(res.valid && v.version === "3.1",
         "docs/openapi.json is a valid OpenAPI 3.1 document",
         JSON.stringify(res.errors ?? v.version).slice(0, 2000));
}

// what the JSON Schema of OpenAPI does not check: unique operationIds, a
// success answer for every operation, path parameters that are declared
{
  const seen = new Map();
  for (const [t, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const M = `${m.toUpperCase()} ${t}`;
      report(op.operationId && !seen.has(op.operationId),
             `${M}: a unique operationId (${op.operationId})`,
             `operationId ${op.operationId} missing or also used by ${seen.get(op.operationId)}`);
      seen.set(op.operationId, M);
      report(Object.keys(op.responses ?? {}).some((s) => /^2\d\d$/.test(s)),
             `${M}: documents its success`, "no 2xx response");
      const declared = [...(item.parameters ?? []), ...(op.parameters ?? [])]
        .map(deref).filter((p) => p.in === "path").map((p) => p.name).sort();
      const inPath = [...t.matchAll(/\{([^}]+)\}/g)].map((x) => x[1]).sort();
      report(JSON.stringify(declared) === JSON.stringify(inPath),
             `${M}: its path parameters are declared`,
             `declared [${declared}], in the path [${inPath}]`);
    }
  }
}

// --- paths: templates, matching ------------------------------------------

const templates = Object.keys(doc.paths);

function templateRegex(t) {
  return new RegExp("^" + t.replace(/[.]/g, "\\.")
                           .replace(/\{[^}]+\}/g, "([^/]+)") + "$");
}

// the template a concrete path falls under: literal segments win
function matchPath(path) {
  const hits = templates.filter((t) => templateRegex(t).test(path));
  hits.sort((a, b) => (a.match(/\{/g) || []).length
                      - (b.match(/\{/g) || []).length);
  return hits[0];
}

function params(template, method) {
  const item = doc.paths[template];
  const all = [...(item.parameters ?? []), ...(item[method]?.parameters ?? [])]
    .map(deref);
  return all;
}

function coerce(schema, s) {
  const t = deref(schema)?.type
    ?? (schema.$ref ? doc.components.schemas[schema.$ref.split("/").pop()]
                        ?.type : undefined);
  if (t === "integer" && /^-?\d+$/.test(s)) return Number(s);
  return s;
}

// problems of a request's path and query parameters against the document
function checkParams(template, method, path, query) {
  const problems = [];
  const m = path.match(templateRegex(template));
  const names = [...template.matchAll(/\{([^}]+)\}/g)].map((x) => x[1]);
  const ps = params(template, method);
  names.forEach((n, i) => {
    const p = ps.find((x) => x.in === "path" && x.name === n);
    if (!p) {
      problems.push(`path parameter ${n} undocumented`);
      return;
    }
    const err = validate(p.schema, coerce(p.schema, decodeURIComponent(m[i + 1])));
    if (err) problems.push(`path parameter ${n}: ${err}`);
  });
  for (const [k, v] of new URLSearchParams(query ?? "")) {
    const p = ps.find((x) => x.in === "query" && x.name === k);
    if (!p) {
      problems.push(`query parameter ${k} undocumented`);
      continue;
    }
    const err = validate(p.schema, coerce(p.schema, v));
    if (err) problems.push(`query parameter ${k}: ${err}`);
  }
  return problems;
}

function checkRequestBody(template, method, body) {
  const op = doc.paths[template]?.[method];
  const rb = deref(op?.requestBody);
  if (body === undefined) {
    return rb?.required ? ["the request body is required"] : [];
  }
  const media = rb?.content?.["application/json"];
  if (!media) return ["no JSON request body is documented"];
  const err = validate(media.schema, body);
  return err ? [`request body: ${err}`] : [];
}

function mediaBase(ct) {
  return (ct ?? "").split(";")[0].trim().toLowerCase();
}

// problems of an answer against the document; body: text
function checkResponse(template, method, status, contentType, text) {
  const op = doc.paths[template]?.[method];
  if (!op) return [`${method.toUpperCase()} ${template} is not documented`];
  const resp = deref(op.responses?.[String(status)]);
  if (!resp) {
    return [`status ${status} is not documented for ${method.toUpperCase()} `
            + template];
  }
  return checkMedia(resp, contentType, text, `${status}`);
}

function checkMedia(resp, contentType, text, what) {
  const base = mediaBase(contentType);
  const media = resp.content?.[base];
  if (!media) return [`${what}: content type "${base}" is not documented`];
  if (base !== "application/json") {
    return typeof text === "string" ? [] : [`${what}: no body`];
  }
  let value;
  try {
    value = typeof text === "string" ? JSON.parse(text) : text;
  } catch (e) {
    return [`${what}: the body is not JSON: ${e.message}`];
  }
  const err = validate(media.schema, value);
  return err ? [`${what}: ${err}`] : [];
}

// --- the code's routes ---------------------------------------------------

const apiSrc = readFileSync(`${top}/ngx_segura_module/ngx_segura_api.c`, "utf8");
const table = apiSrc.match(/ngx_segura_api_routes\[\] = \{([\s\S]*?)\n\};/);
const routes = [];
if (table) {
  for (const m of table[1].matchAll(
         /\{\s*"([^"]+)",\s*(\w+),\s*(\d),\s*(NGX_SEGURA_API_\w+)\s*\}/g)) {
    routes.push({ name: m[1], handler: m[2], anonymous: m[3] === "1",
                  items: m[4] });
  }
}
report(routes.length > 5, "the route table of ngx_segura_api.c is read",
       `${routes.length} routes`);

// the sub-resources a handler routes: ngx_strcmp(sub, "x"), or
// ngx_strcmp(path + <n>, "/x") for items named otherwise than by a number
const sources = {};
for (const f of readFileSync(`${top}/config`, "utf8")
       .matchAll(/\$SEGURA_DIR\/(ngx_segura_api\w*\.c)/g)) {
  sources[f[1]] = readFileSync(`${top}/ngx_segura_module/${f[1]}`, "utf8");
}
// the rotation's results per device are its engine's
sources["ngx_segura_rotate.c"] =
  readFileSync(`${top}/ngx_segura_module/ngx_segura_rotate.c`, "utf8");

function handlerFile(handler) {
  return Object.keys(sources).find((f) => new RegExp(
    `\\n${handler}\\(ngx_segura_api_ctx_t`).test(sources[f]));
}

// a handler's own sub-handlers, followed one level (the sessions handler
// calls the one of "<uuid>/end" and "<uuid>/recording")
function subsOf(handler) {
  const subs = new Set();
  const seen = new Set();
  const todo = [handler];
  while (todo.length) {
    const h = todo.pop();
    if (seen.has(h)) continue;
    seen.add(h);
    const f = handlerFile(h);
    if (!f) continue;
    const body = sources[f].split(new RegExp(`\\n${h}\\(`))[1]
      ?.split(/\n\}\n/)[0] ?? "";
    for (const m of body.matchAll(
           /ngx_strcmp\((?:sub|path \+ \d+),\s*"\/?([A-Za-z0-9_.-]+)"\)/g)) {
      subs.add(m[1]);
    }
    for (const m of body.matchAll(/\b(ngx_segura_api_\w+)\(ctx, conn/g)) {
      if (m[1] !== h) todo.push(m[1]);
    }
  }
  return [...subs];
}

const openapiPath = readFileSync(
  `${top}/ngx_segura_module/ngx_segura_openapi.h`, "utf8")
  .match(/#define NGX_SEGURA_OPENAPI_PATH\s+"([^"]+)"/)?.[1];

// every path the code serves, as a template, with where it comes from
const codePaths = new Map();
if (openapiPath) codePaths.set(openapiPath, "ngx_segura_openapi.c");
for (const r of routes) {
  const from = `route "${r.name}" of ngx_segura_api_routes[]`;
  const subs = subsOf(r.handler);
  if (r.items === "NGX_SEGURA_API_NAMED") {
    // "sessions/<uuid>/end": the collection, and each sub-resource
    codePaths.set(`/api/${r.name}`, from);
    for (const s of subs) codePaths.set(`/api/${r.name}/{id}/${s}`, from);
    continue;
  }
  codePaths.set(`/api/${r.name}`, from);
  if (r.items === "NGX_SEGURA_API_NUMBERED") {
    codePaths.set(`/api/${r.name}/{id}`, from);
    for (const s of subs) codePaths.set(`/api/${r.name}/{id}/${s}`, from);
  }
}

const norm = (t) => t.replace(/\{[^}]+\}/g, "{id}");
const docNorm = new Map(templates.map((t) => [norm(t), t]));

for (const [p, from] of codePaths) {
  report(docNorm.has(p), `the code's ${p} is in docs/openapi.json`,
         `docs/openapi.json lacks the path ${p} (${from})`);
}
for (const t of templates) {
  report(codePaths.has(norm(t)), `docs/openapi.json's ${t} is routed by the code`,
         `docs/openapi.json has ${t}, which no route of the code serves`);
}

// --- request bodies: the members the C code accepts ----------------------

// the NULL-ended string arrays of the handlers (fields a client may send,
// read-only members of a GET representation, what a PUT must send)
const lists = {};
for (const src of Object.values(sources)) {
  for (const m of src.matchAll(
         /static const char \*const\s+(ngx_segura_\w+)\[\] = \{([^}]*)\}/g)) {
    lists[m[1]] = [...m[2].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
  }
}

function propsOf(name) {
  const s = doc.components?.schemas?.[name];
  const t = s?.$ref ? doc.components.schemas[s.$ref.split("/").pop()] : s;
  return Object.keys(t?.properties ?? {}).sort();
}

function requiredOf(name) {
  return [...(doc.components?.schemas?.[name]?.required ?? [])].sort();
}

function sameSet(what, doc, code, diag) {
  const a = JSON.stringify([...doc].sort());
  const b = JSON.stringify([...code].sort());
  report(a === b, what, `${diag}: the document has ${a}, the code ${b}`);
}

const bodyLists = [
  // schema, how its members are compared, the C arrays
  ["UserCreate", "props", ["ngx_segura_api_user_fields"]],
  ["UserPatch", "props", ["ngx_segura_api_user_fields", "ngx_segura_api_user_readonly"]],
  ["UserPut", "required", ["ngx_segura_api_user_whole"]],
  ["GroupCreate", "props", ["ngx_segura_api_group_fields"]],
  ["GroupPatch", "props", ["ngx_segura_api_group_fields", "ngx_segura_api_group_readonly"]],
  ["PermissionsWrite", "props", ["ngx_segura_api_group_permissions"]],
  ["DeviceCreate", "props", ["ngx_segura_api_device_fields"]],
  ["DevicePatch", "props", ["ngx_segura_api_device_fields", "ngx_segura_api_device_readonly"]],
  ["DevicePut", "required", ["ngx_segura_api_device_fields"]],
  ["KeyCreate", "props", ["ngx_segura_api_key_fields"]],
  ["KeyPatch", "props", ["ngx_segura_api_key_fields", "ngx_segura_api_key_readonly"]],
  ["KeyPut", "required", ["ngx_segura_api_key_whole"]],
  ["KeyGenerate", "props", ["ngx_segura_api_key_generate_fields"]],
  ["KeyCheck", "props", ["ngx_segura_check_fields"]],
  ["KeyDeploy", "props", ["ngx_segura_deploy_fields"]],
  ["KeyRotate", "props", ["ngx_segura_api_rotate_fields"]],
  ["Login", "props", ["ngx_segura_api_login_fields"]],
];
for (const [schema, how, arrays] of bodyLists) {
  const missing = arrays.filter((a) => !lists[a]);
  if (missing.length) {
    report(false, `${schema}: the C arrays are found`, `no ${missing} in the sources`);
    continue;
  }
  const code = arrays.flatMap((a) => lists[a]);
  sameSet(`${schema}: its ${how === "props" ? "members" : "required members"} are ${arrays.join(" + ")}`,
          how === "props" ? propsOf(schema) : requiredOf(schema), code,
          `${schema} and ${arrays.join(" + ")} differ`);
  const s = doc.components?.schemas?.[schema];
  const t = s?.$ref ? doc.components.schemas[s.$ref.split("/").pop()] : s;
  report(t?.additionalProperties === false,
         `${schema}: unknown members are refused (additionalProperties false)`,
         "additionalProperties is not false");
}

if (lists.ngx_segura_check_results) {
  sameSet("CheckResult's enum is ngx_segura_check_results[]",
          doc.components.schemas.CheckResult?.enum ?? [],
          lists.ngx_segura_check_results, "the results differ");
} else {
  report(false, "ngx_segura_check_results[] is found", "not in the sources");
}

// a deploy's results, and the checks it stores (as a check stores them)
for (const [schema, array] of [["DeployResult", "ngx_segura_deploy_results"],
                               ["CheckResult", "ngx_segura_deploy_checks"]]) {
  if (lists[array]) {
    sameSet(`${schema}'s enum is ${array}[]`,
            doc.components.schemas[schema]?.enum ?? [], lists[array],
            "the results differ");
  } else {
    report(false, `${array}[] is found`, "not in the sources");
  }
}

// a rotation's results per device
if (lists.ngx_segura_rot_results) {
  sameSet("RotationItem's results are ngx_segura_rot_results[]",
          doc.components.schemas.RotationItem?.properties?.result?.enum ?? [],
          lists.ngx_segura_rot_results, "the results differ");
} else {
  report(false, "ngx_segura_rot_results[] is found", "not in the sources");
}

// a secret a client sends is write-only wherever a schema names it
{
  const secrets = ["password", "private_key", "passphrase"];
  const found = [];
  const walk = (v, at) => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${at}/${i}`));
    if (!v || typeof v !== "object") return;
    for (const [k, x] of Object.entries(v)) {
      if (k === "properties") {
        for (const n of secrets) {
          if (x[n]) found.push([`${at}/properties/${n}`, x[n].writeOnly === true]);
        }
      }
      walk(x, `${at}/${k}`);
    }
  };
  walk(doc, "#");
  report(found.length > 5 && found.every(([, w]) => w),
         `every secret member is writeOnly (${found.length})`,
         `not writeOnly: ${found.filter(([, w]) => !w).map(([p]) => p)}`);
}

// the examples of the document's media types validate against their schemas
{
  let n = 0;
  for (const [t, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const media = [["request", deref(op.requestBody)?.content]];
      for (const [st, r] of Object.entries(op.responses ?? {})) {
        media.push([st, deref(r)?.content]);
      }
      for (const [what, content] of media) {
        for (const [type, mt] of Object.entries(content ?? {})) {
          const exs = Object.entries(mt.examples ?? {});
          if ("example" in mt) exs.push(["example", { value: mt.example }]);
          for (const [name, ex] of exs) {
            n++;
            const err = validate(mt.schema, ex.value);
            report(!err, `${m.toUpperCase()} ${t}: the ${what} example "${name}" (${type}) validates`,
                   err);
          }
        }
      }
    }
  }
  report(n >= 4, `the document's examples are read (${n})`, `${n} examples`);
}

// --- (c) the error codes -------------------------------------------------

const httpSrc = readFileSync(`${top}/ngx_segura_module/ngx_segura_http.c`, "utf8");
const errTable = httpSrc.match(/ngx_segura_errors\[\] = \{([\s\S]*?)\n\};/);
const cErrors = [...(errTable?.[1] ?? "").matchAll(
  /\{\s*(\d+),\s*ngx_string\("(\w+)"\)/g)]
  .map((m) => ({ status: Number(m[1]), code: m[2] }))
  .filter((e) => e.code !== "ok");
report(cErrors.length > 10, "the error table of ngx_segura_http.c is read",
       `${cErrors.length} codes`);
{
  const docCodes = doc.components?.schemas?.ErrorCode?.enum ?? [];
  const c = cErrors.map((e) => e.code);
  const missing = c.filter((x) => !docCodes.includes(x));
  const extra = docCodes.filter((x) => !c.includes(x));
  report(missing.length === 0 && extra.length === 0
         && docCodes.length === c.length,
         "ErrorCode's enum is the C error table",
         `missing from the document: [${missing}], not in the C table: [${extra}]`);

  // each error response admits exactly the codes of its status
  const byStatus = {};
  for (const e of cErrors) (byStatus[e.status] ??= []).push(e.code);
  for (const [status, codes] of Object.entries(byStatus)) {
    const name = Object.keys(doc.components.responses ?? {}).find((n) => {
      const s = doc.components.responses[n].content?.["application/json"]?.schema;
      return JSON.stringify(s ?? {}).includes("#/components/schemas/Error")
        && codes.every((c) => JSON.stringify(s).includes(`"${c}"`));
    });
    const r = name && doc.components.responses[name];
    const enumOf = r?.content["application/json"].schema.allOf?.[1]
      ?.properties?.error?.properties?.code?.enum;
    report(JSON.stringify([...(enumOf ?? [])].sort())
           === JSON.stringify([...codes].sort()),
           `the error response of status ${status} admits ${codes.join(", ")}`,
           `components.responses has no response whose code enum is [${codes}]`);
    // every operation that documents this status uses that response
    for (const t of templates) {
      for (const m of METHODS) {
        const ref = doc.paths[t][m]?.responses?.[status]?.$ref;
        if (doc.paths[t][m]?.responses?.[status]) {
          report(ref === `#/components/responses/${name}`,
                 `${m.toUpperCase()} ${t} ${status} is the error response`,
                 `uses ${ref ?? "an inline response"}`);
        }
      }
    }
  }
}

// --- HTTP ----------------------------------------------------------------

class Client {
  constructor(name) { this.name = name; this.cookie = null; }

  async request(method, path, body, headers = {}) {
    const h = { ...headers };
    if (this.cookie) h.Cookie = this.cookie;
    let payload;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : JSON.stringify(body);
      h["Content-Type"] ??= "application/json";
    }
    const res = await fetch(cfg.base + path, { method, headers: h,
                                               body: payload,
                                               redirect: "manual" });
    const text = await res.text();
    const sc = res.headers.get("set-cookie");
    const m = sc && sc.match(/segura_session=([^;]*)/);
    if (m) this.cookie = m[1] ? `segura_session=${m[1]}` : null;
    return { status: res.status, type: res.headers.get("content-type"),
             text, headers: res.headers };
  }

  async login([user, password]) {
    const r = await this.request("POST", "/api/login",
                                 { username: user, password });
    if (r.status !== 200) throw new Error(`login of ${user}: ${r.status} ${r.text}`);
    return r;
  }
}

const admin = new Client("admin");
await admin.login(cfg.admin);
const user = new Client("user");
await user.login(cfg.user);
const anon = new Client("anonymous");

function unknownRoute(r) {
  // the router's own 404 (ngx_segura_api.c), not a handler's
  if (r.status !== 404) return false;
  try {
    return JSON.parse(r.text).error.message === "No such API endpoint";
  } catch {
    return false;
  }
}

// a concrete path for a template: fixtures for reads, missing ids for
// writes, so that no probe changes the fixtures
function concrete(template, method) {
  const write = method === "put" || method === "patch" || method === "delete";
  const base = template.split("/")[2];
  return template.replace(/\{[^}]+\}/g, () => {
    if (base === "sessions") return write ? MISSING_SESSION : cfg.ids.session;
    const id = { users: cfg.ids.user, groups: cfg.ids.group,
                 devices: cfg.ids.device, keys: cfg.ids.key }[base];
    return write || id === undefined ? MISSING_ID : String(id);
  });
}

async function probe(method, path) {
  const M = method.toUpperCase();
  const body = method === "get" || method === "delete" ? undefined : {};
  if (path === "/api/logout") {
    // its own session, so that the probe does not log the others out
    const c = new Client("logout");
    await c.login(cfg.admin);
    return c.request(M, path, body);
  }
  return admin.request(M, path, body);
}

// --- (b) every method of every path, documented or not -------------------

const probePaths = new Set([...templates, ...[...codePaths.keys()]
  .filter((p) => !docNorm.has(p))]);

for (const t of probePaths) {
  for (const m of METHODS) {
    const path = concrete(t, m);
    const r = await probe(m, path);
    const M = m.toUpperCase();
    const documented = Boolean(doc.paths[t]?.[m]);
    if (documented) {
      report(!unknownRoute(r), `${M} ${t}: the module routes it`,
             `${M} ${path} is the router's "No such API endpoint"`);
      const problems = checkResponse(t, m, r.status, r.type, r.text);
      report(problems.length === 0,
             `${M} ${t}: the answer (${r.status}) is as documented`,
             `${M} ${path}: ${problems.join("; ")}: ${r.text.slice(0, 300)}`);
    } else {
      let code;
      try { code = JSON.parse(r.text).error.code; } catch { code = "-"; }
      report(r.status === 405 && code === "method_not_allowed"
             || unknownRoute(r),
             `${M} ${t} is not served (405), as documented`,
             `${M} ${t} is served by the module (${r.status} ${code}) but `
             + `docs/openapi.json does not describe it`);
    }
  }
}

// HEAD is accepted wherever GET is (info.description says so): the same
// status, no body; where GET is not, 405 as for any other method
for (const t of templates) {
  const path = concrete(t, "get");
  const g = await admin.request("GET", path);
  const h = await admin.request("HEAD", path);
  if (doc.paths[t].get) {
    report(h.status === g.status && h.text === "",
           `HEAD ${t}: as GET (${g.status}), without a body`,
           `HEAD ${path}: ${h.status}, GET: ${g.status}, body "${h.text.slice(0, 80)}"`);
  } else {
    report(h.status === 405, `HEAD ${t}: 405 as GET`, `HEAD ${path}: ${h.status}`);
  }
}

// info.version is the module's
{
  const v = readFileSync(`${top}/ngx_segura_module/ngx_segura.h`, "utf8")
    .match(/#define NGX_SEGURA_VERSION\s+"([^"]+)"/)?.[1];
  report(doc.info?.version === v, `info.version is NGX_SEGURA_VERSION (${v})`,
         `info.version is ${doc.info?.version}`);
}

// --- (e) real answers ----------------------------------------------------

async function sample(what, client, method, path, body, headers, against) {
  const r = await client.request(method, path, body, headers);
  const t = matchPath(path.split("?")[0]);
  let problems;
  if (against) {
    problems = against.status === r.status
      ? checkMedia(deref(against.response), r.type, r.text, `${r.status}`)
      : [`status ${r.status}, expected ${against.status}`];
  } else {
    problems = t ? checkResponse(t, method.toLowerCase(), r.status, r.type, r.text)
                 : [`${path} matches no path of the document`];
    // a Set-Cookie the document promises is there
    const resp = t && deref(doc.paths[t][method.toLowerCase()]
                              ?.responses?.[String(r.status)]);
    if (resp?.headers?.["Set-Cookie"]
        && !/^segura_session=/.test(r.headers.get("set-cookie") ?? "")) {
      problems.push("no Set-Cookie: segura_session");
    }
  }
  report(problems.length === 0, `real answer: ${what} (${method} ${path} ${r.status})`,
         `${problems.join("; ")}: ${r.text.slice(0, 300)}`);
  return r;
}

const ids = cfg.ids;
await sample("a user", admin, "GET", `/api/users/${ids.user}`);
await sample("the user list", admin, "GET", "/api/users");
await sample("a group", admin, "GET", `/api/groups/${ids.group}`);
await sample("a device", admin, "GET", `/api/devices/${ids.device}`);
await sample("a device, as its user", user, "GET", `/api/devices/${ids.device}`);
await sample("a key", admin, "GET", `/api/keys/${ids.key}`);
await sample("a key, as its user", user, "GET", `/api/keys/${ids.key}`);
await sample("the Remote Access report", user, "GET", `/api/keys/${ids.key}/devices`);
await sample("me", user, "GET", "/api/me");
await sample("health", anon, "GET", "/api/health");
await sample("this document", anon, "GET", "/api/openapi.json");
{
  const r = await sample("the session list", admin, "GET", "/api/sessions?limit=1");
  let n = 0;
  try { n = JSON.parse(r.text).items.length; } catch { /* reported above */ }
  report(n === 1, "the session list holds the test's session", r.text.slice(0, 300));
}
await sample("the session list, as its user", user, "GET", "/api/sessions");
await sample("a recording (asciicast)", admin, "GET",
             `/api/sessions/${ids.session}/recording`);
await sample("a recording (raw)", admin, "GET",
             `/api/sessions/${ids.session}/recording?format=raw`);
await sample("metrics", admin, "GET", "/api/metrics");
for (const action of ["deploy", "withdraw"]) {
  const r = await sample(`a ${action} of no device`, admin, "POST",
                         `/api/keys/${ids.key}/${action}`,
                         { devices: [], via: { password: "openapi-no-device" } });
  let a;
  try { a = JSON.parse(r.text); } catch { /* reported above */ }
  report(a?.action === action && a?.total === 0 && a?.items?.length === 0,
         `a ${action} of no device answers action "${action}" and no item`,
         r.text.slice(0, 300));
  await sample(`422 of a ${action} without via`, admin, "POST",
               `/api/keys/${ids.key}/${action}`, { devices: [ids.device] });
  await sample(`404 of a ${action} of no key`, admin, "POST",
               `/api/keys/${MISSING_ID}/${action}`, { via: { key: ids.key } });
  await sample(`403 of a ${action} by a user`, user, "POST",
               `/api/keys/${ids.key}/${action}`, { via: { key: ids.key } });
}
{
  // on the test's sshd, logged in with the key itself: the program edits
  // ~/.ssh/authorized_keys under the sshd's own HOME; the key stays
  // authorized by the sshd's own file, so the withdraw's check disagrees
  const items = async (what, action, via) => {
    const r = await sample(what, admin, "POST", `/api/keys/${ids.key}/${action}`,
                           { devices: [ids.device], via });
    try { return [JSON.parse(r.text).items?.[0], r.text]; } catch { return [undefined, r.text]; }
  };
  let [it, text] = await items("a deploy on the device", "deploy", { key: ids.key });
  report(it?.result === "deployed" && it?.check === "deployed"
         && typeof it?.checked_at === "string",
         "the deploy is deployed, and its check is stored", text.slice(0, 300));
  [it, text] = await items("a withdraw from the device", "withdraw", { key: ids.key });
  report(it?.result === "verify_failed" && it?.check === "deployed",
         "the withdraw is verify_failed: the key is still authorized", text.slice(0, 300));
  // the sshd takes no password: auth_failed, no check, and the password
  // is not in the answer
  const pw = "openapi-one-time-pw";
  [it, text] = await items("a deploy with a refused password", "deploy", { password: pw });
  report(it?.result === "auth_failed" && it?.check === null && it?.checked_at === null,
         "a refused password is auth_failed, without a check", text.slice(0, 300));
  report(!text.includes(pw), "the one-time password is not in the answer", "it is");
}
{
  const c = new Client("login sample");
  await sample("a login", c, "POST", "/api/login",
               { username: cfg.user[0], password: cfg.user[1] });
  const old = c.cookie;
  await sample("a logout", c, "POST", "/api/logout", {});
  c.cookie = old;
  await sample("401 with the revoked cookie", c, "GET", "/api/me");
}
await sample("401", anon, "GET", "/api/me");
await sample("403", user, "GET", "/api/users");
await sample("404", admin, "GET", `/api/devices/${MISSING_ID}`);
await sample("404 of the router", admin, "GET", "/api/nothing-here", undefined,
             undefined, { status: 404, response: doc.components.responses.NotFound });
await sample("405", admin, "DELETE", "/api/me", undefined, undefined,
             { status: 405, response: doc.components.responses.MethodNotAllowed });
await sample("405 of this document", anon, "POST", "/api/openapi.json", {},
             undefined,
             { status: 405, response: doc.components.responses.MethodNotAllowed });
await sample("413", admin, "POST", "/api/devices",
             JSON.stringify({ name: "big", address: "192.0.2.9",
                              description: "x".repeat(70 * 1024) }));
await sample("415", admin, "POST", "/api/devices", "name=x", {
  "Content-Type": "application/x-www-form-urlencoded" });
await sample("422", admin, "POST", "/api/devices",
             { name: "typed", address: "192.0.2.9", port: "22" });
await sample("422 naming an unknown member", admin, "PATCH",
             `/api/devices/${ids.device}`, { pasphrase: "x" });
await sample("400", admin, "POST", "/api/devices", "{not json");
await sample("409", admin, "POST", "/api/devices",
             { name: "sshd", address: "192.0.2.10" });
{
  // nginx's own error, made JSON by ngx_segura_errpage.c
  const long = "/api/devices?q=" + "a".repeat(16 * 1024);
  const r = await admin.request("GET", long);
  const problems = r.status === 414
    ? checkMedia(doc.components.responses.UriTooLong, r.type, r.text, "414")
    : [`status ${r.status}`];
  report(problems.length === 0, "real answer: 414 of nginx, as JSON",
         `${problems.join("; ")}: ${r.text.slice(0, 200)}`);
}
{
  // a throttled name: 5 failures, then 429 with Retry-After
  const c = new Client("throttled");
  for (let i = 0; i < 5; i++) {
    await c.request("POST", "/api/login", { username: "nobody-openapi",
                                            password: "wrong-password" });
  }
  const r = await sample("429", c, "POST", "/api/login",
                         { username: "nobody-openapi", password: "wrong-password" });
  report(/^\d+$/.test(r.headers.get("retry-after") ?? ""),
         "429 carries Retry-After, as documented",
         `Retry-After: ${r.headers.get("retry-after")}`);
}

// the validator is not vacuous: wrong answers are refused
{
  const u = JSON.parse((await admin.request("GET", `/api/users/${ids.user}`)).text);
  const bad = [
    ["a user without id", { ...u, id: undefined }],
    ["a user with an extra member", { ...u, secret: 1 }],
    ["a user with a string id", { ...u, id: String(u.id) }],
  ];
  for (const [what, v] of bad) {
    const problems = checkResponse("/api/users/{id}", "get", 200,
                                   "application/json", JSON.stringify(v));
    report(problems.length > 0, `the schema refuses ${what}`, "accepted");
  }
  report(checkResponse("/api/users/{id}", "get", 200, "application/json",
    JSON.stringify({ error: { code: "not_found", message: "x" } })).length > 0,
    "an error body is not a user", "accepted");
}

// --- (d) docs/api.md's examples ------------------------------------------

const md = readFileSync(`${top}/docs/api.md`, "utf8");

// the indented blocks, dedented
function codeBlocks(text) {
  const blocks = [];
  let cur = null;
  let pending = 0;
  for (const line of text.split("\n")) {
    if (/^ {4,}\S/.test(line)) {
      if (!cur) cur = [];
      while (pending-- > 0) cur.push("");
      pending = 0;
      cur.push(line);
    } else if (line.trim() === "" && cur) {
      pending++;
    } else {
      if (cur) blocks.push(cur);
      cur = null;
      pending = 0;
    }
  }
  if (cur) blocks.push(cur);
  return blocks.map((b) => {
    const indent = Math.min(...b.filter((l) => l.trim()).map(
      (l) => l.match(/^ */)[0].length));
    return b.map((l) => l.slice(indent)).join("\n");
  });
}

// one JSON value at s[i]: [value text, end index]
function jsonAt(s, i) {
  let depth = 0;
  let inString = false;
  for (let j = i; j < s.length; j++) {
    const ch = s[j];
    if (inString) {
      if (ch === "\\") j++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') {
      inString = true;
    } else if (ch === "{" || ch === "[") {
      depth++;
    } else if (ch === "}" || ch === "]") {
      if (--depth === 0) return [s.slice(i, j + 1), j + 1];
    }
  }
  return [s.slice(i), s.length];
}

const REQ = /^(GET|POST|PUT|PATCH|DELETE|HEAD) (\/api\/\S*)/;
const HEADER = /^([A-Z][A-Za-z-]*): (.*)$/;

// the exchanges of a block: { method, path, body, status, headers, type,
// text }; or { error: text } for a bare error example
function exchanges(block) {
  const out = [];
  let s = block;
  let i = 0;
  const skipWs = () => { while (i < s.length && /\s/.test(s[i])) i++; };
  skipWs();
  if (!REQ.test(s.slice(i))) {
    const m = s.slice(i).match(/^HTTP\/1\.1 (\d{3})[^\n]*\n/);
    if (m) {
      i += m[0].length;
      skipWs();
      out.push({ bare: true, status: Number(m[1]), text: jsonAt(s, i)[0] });
      return out;
    }
    if (s[i] === "{") {
      out.push({ bare: true, text: jsonAt(s, i)[0] });
      return out;
    }
    return null;
  }
  while (i < s.length) {
    skipWs();
    const m = s.slice(i).match(REQ);
    if (!m) break;
    const ex = { method: m[1], path: m[2], headers: {} };
    i += m[0].length;
    skipWs();
    if (s[i] === "{" || s[i] === "[") {
      const [t, j] = jsonAt(s, i);
      ex.body = t;
      i = j;
      skipWs();
    }
    const st = s.slice(i).match(/^(\d{3})\b/);
    if (!st) {
      ex.problem = "no status after the request";
      out.push(ex);
      break;
    }
    ex.status = Number(st[1]);
    i += 3;
    const readHeaders = () => {
      for (;;) {
        while (i < s.length && (s[i] === " " || s[i] === "\n")) i++;
        const line = s.slice(i).split("\n")[0];
        const h = line.match(HEADER);
        if (!h || REQ.test(line)) return;
        ex.headers[h[1].toLowerCase()] = h[2];
        i += line.length;
      }
    };
    readHeaders();
    const textual = ex.headers["content-type"]
      && mediaBase(ex.headers["content-type"]) !== "application/json";
    if (!textual && (s[i] === "{" || s[i] === "[")) {
      const [t, j] = jsonAt(s, i);
      ex.text = t;
      i = j;
      readHeaders();
    } else {
      // a text body: up to the next request
      const rest = s.slice(i);
      const next = rest.search(/\n(GET|POST|PUT|PATCH|DELETE|HEAD) \/api\//);
      ex.text = next < 0 ? rest : rest.slice(0, next);
      i += ex.text.length;
    }
    ex.type = ex.headers["content-type"]
      ?? (ex.text.trim() ? "application/json" : undefined);
    out.push(ex);
  }
  return out;
}

let examples = 0;
const exampleOps = new Set();
for (const block of codeBlocks(md)) {
  const exs = exchanges(block);
  if (exs === null) continue;
  const first = block.split("\n")[0];
  for (const ex of exs) {
    examples++;
    const where = ex.bare ? `error example "${first.slice(0, 60)}"`
      : `docs/api.md example ${ex.method} ${ex.path} ${ex.status ?? ""}`;
    if (ex.bare) {
      const problems = checkMedia(
        { content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
        "application/json", ex.text, "error");
      const c = ex.status && cErrors.find((e) => {
        try { return e.code === JSON.parse(ex.text).error.code; } catch { return false; }
      });
      if (ex.status && c && c.status !== ex.status) {
        problems.push(`status ${ex.status} but the code is a ${c.status}`);
      }
      report(problems.length === 0, `${where} validates`, problems.join("; "));
      continue;
    }
    const [path, query] = ex.path.split("?");
    const t = matchPath(path);
    const m = ex.method === "HEAD" ? "get" : ex.method.toLowerCase();
    const problems = [];
    if (ex.problem) problems.push(ex.problem);
    if (!t) {
      problems.push(`${path} matches no path of docs/openapi.json`);
    } else if (!doc.paths[t][m]) {
      problems.push(`${ex.method} ${t} is not in docs/openapi.json`);
    } else {
      exampleOps.add(`${m} ${t}`);
      problems.push(...checkParams(t, m, path, query));
      let body;
      if (ex.body !== undefined) {
        try { body = JSON.parse(ex.body); } catch (e) {
          problems.push(`the request body is not JSON: ${e.message}`);
        }
      }
      if (!problems.length) problems.push(...checkRequestBody(t, m, body));
      if (ex.status !== undefined) {
        problems.push(...checkResponse(t, m, ex.status, ex.type, ex.text));
      }
    }
    report(problems.length === 0, `${where} validates`,
           `${problems.join("; ")}`);
  }
}
report(examples > 30, "docs/api.md's examples are read", `${examples} examples`);

// every operation has an example in docs/api.md
for (const t of templates) {
  for (const m of METHODS) {
    if (!doc.paths[t][m]) continue;
    report(exampleOps.has(`${m} ${t}`),
           `docs/api.md has an example of ${m.toUpperCase()} ${t}`,
           `no example of ${m.toUpperCase()} ${t} in docs/api.md`);
  }
}

console.log(`# ${failures} failure(s)`);
