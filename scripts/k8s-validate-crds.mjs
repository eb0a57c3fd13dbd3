// Validates prometheus-operator objects (PrometheusRule, ServiceMonitor, PodMonitor) against
// their CRD schemas, as @kubernetes-models/prometheus-operator compiled them, and refuses
// fields the CRDs do not define (the API server would drop them silently; the operator would
// then ignore what the manifest meant). Reads a JSON array of objects on stdin; the argument
// is the npm prefix scripts/k8s-tools.sh installed into. Prints one line per object; exits 1
// when any fails. Used by tests/e2e/k8s.rs.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const prefix = process.argv[2];
const models = `${prefix}/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1`;

// The properties a model class declares (its own and inherited ones), from its .d.ts.
function fields(type) {
  const text = readFileSync(`${models}/${type}.d.ts`, "utf8");
  const body = text.slice(text.indexOf("export declare class"));
  return new Set([...body.matchAll(/^ {4}"([^"]+)"\??:/gm)].map((m) => m[1]));
}

// Where each level of an object is described: path → model type.
const levels = {
  PrometheusRule: [["", "PrometheusRule"], ["spec", "PrometheusRuleSpec"], ["spec.groups[]", "RuleGroup"], ["spec.groups[].rules[]", "Rule"]],
  ServiceMonitor: [["", "ServiceMonitor"], ["spec", "ServiceMonitorSpec"], ["spec.endpoints[]", "Endpoint"]],
  PodMonitor: [["", "PodMonitor"], ["spec", "PodMonitorSpec"], ["spec.podMetricsEndpoints[]", "PodMetricsEndpoint"]],
};

// Every value at a dotted path, `[]` stepping into each element of an array.
function at(value, path) {
  let values = [value];
  for (const step of path ? path.split(".") : []) {
    const key = step.replace("[]", "");
    values = values.flatMap((v) => (v && v[key] !== undefined ? [v[key]] : []));
    if (step.endsWith("[]")) values = values.flat();
  }
  return values;
}

const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const object of objects) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const problems = [];
  if (!levels[object.kind]) {
    problems.push(`no schema here for kind ${object.kind}`);
  } else {
    const { [object.kind]: Model } = await import(pathToFileURL(`${models}/${object.kind}.js`));
    try {
      new Model(object).validate();
    } catch (err) {
      problems.push(err.message);
    }
    for (const [path, type] of levels[object.kind]) {
      const known = fields(type);
      for (const value of at(object, path)) {
        for (const key of Object.keys(value ?? {})) {
          if (!known.has(key)) problems.push(`${path || "(top)"}: unknown field ${key} (${type} has ${[...known].join(", ")})`);
        }
      }
    }
  }
  if (problems.length) {
    failed++;
    console.log(`FAIL ${name}: ${problems.join("; ")}`);
  } else {
    console.log(`ok ${name}`);
  }
}
process.exit(failed ? 1 : 0);
