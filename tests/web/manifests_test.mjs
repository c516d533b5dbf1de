// Checks deploy/kubernetes and deploy/kserve offline, as far as can be without a cluster:
// - every Kubernetes object validates against the API's schema (kubernetes-models; the
//   ServiceMonitor against the Prometheus operator's), i.e. kinds, types and required fields
//   (unknown fields are not caught: the generated validators allow them);
// - the objects agree with each other: Service, PodDisruptionBudget and ServiceMonitor select the
//   Deployment's pods, named ports exist, probes hit ferry's health paths, the HPA and the GPU
//   patch target the Deployment, the kustomizations list files that exist;
// - the KServe objects have the fields KServe needs (no schema for them is at hand offline).
// Prints "ok - ..." / "not ok - ..." per check and exits 1 if any failed.
//   node manifests_test.mjs <repository root>
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

const root = process.argv[2];
if (!root) {
  console.error('usage: node manifests_test.mjs <repository root>');
  process.exit(2);
}
let failures = 0;
async function check(name, body) {
  try {
    await body();
    console.log('ok - ' + name);
  } catch (e) {
    ++failures;
    console.log('not ok - ' + name + ': ' + (e.message ?? e));
  }
}
function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const load = (rel) => YAML.parseAllDocuments(fs.readFileSync(path.join(root, rel), 'utf8')).map((d) => {
  if (d.errors.length) throw new Error(rel + ': ' + d.errors.map((e) => e.message).join('; '));
  return d.toJS();
});

// The kubernetes-models class for an object's apiVersion and kind.
async function modelClass(object) {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  if (group === 'monitoring.coreos.com') {
    return (await import(`@kubernetes-models/prometheus-operator/${group}/${version}/${object.kind}`))[object.kind];
  }
  const dir = group === '' ? version : `${group}/${version}`;
  return (await import(`kubernetes-models/${dir}/${object.kind}`))[object.kind];
}

const base = 'deploy/kubernetes';
const kustomization = load(`${base}/kustomization.yaml`)[0];
const files = [...kustomization.resources.map((r) => `${base}/${r}`), `${base}/optional/servicemonitor.yaml`,
  `${base}/optional/hpa.yaml`];
const objects = files.flatMap((f) => load(f).map((o) => ({ file: f, o })));
const find = (kind) => objects.find(({ o }) => o.kind === kind)?.o;

for (const { file, o } of objects) {
  await check(`${file}: ${o.kind} ${o.metadata?.name} matches the API schema`, async () => {
    const Model = await modelClass(o);
    new Model(o).validate();
  });
}

const deployment = find('Deployment');
const podLabels = deployment.spec.template.metadata.labels;
const selects = (selector) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
const container = deployment.spec.template.spec.containers.find((c) => c.name === 'ferry');
const portNames = new Set(container.ports.map((p) => p.name));

await check('the kustomizations list files that exist', () => {
  for (const r of kustomization.resources) assert(fs.existsSync(path.join(root, base, r)), 'missing ' + r);
  const gpu = load(`${base}/gpu/kustomization.yaml`)[0];
  for (const p of gpu.patches) assert(fs.existsSync(path.join(root, base, 'gpu', p.path)), 'missing ' + p.path);
  assert(gpu.resources.includes('..'), 'the GPU overlay does not build on the base');
});

await check('the Deployment selects its own pods and runs the container as a non-root user', () => {
  assert(selects(deployment.spec.selector.matchLabels), 'selector does not match the pod labels');
  const security = deployment.spec.template.spec.securityContext;
  assert(security.runAsNonRoot === true && security.runAsUser !== 0, 'pods may run as root');
  assert(container.securityContext.allowPrivilegeEscalation === false, 'privilege escalation allowed');
});

await check('probes: startup and readiness on /v2/health/ready, liveness on /v2/health/live, named ports', () => {
  assert(container.startupProbe.httpGet.path === '/v2/health/ready', 'startup probe path');
  assert(container.readinessProbe.httpGet.path === '/v2/health/ready', 'readiness probe path');
  assert(container.livenessProbe.httpGet.path === '/v2/health/live', 'liveness probe path');
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    assert(portNames.has(container[probe].httpGet.port), `${probe} port ${container[probe].httpGet.port} not declared`);
  }
  const metricsPort = container.ports.find((p) => p.name === 'metrics').containerPort;
  assert(container.args.includes(`--metrics-port=${metricsPort}`), 'the metrics port is not the one ferry listens on');
  const httpPort = container.ports.find((p) => p.name === 'http').containerPort;
  assert(container.args.includes(`--http-port=${httpPort}`), 'the http port is not the one ferry listens on');
});

await check('the API key comes from a Secret, required', () => {
  const key = container.env.find((e) => e.name === 'FERRY_API_KEY');
  assert(key?.valueFrom?.secretKeyRef?.name === 'ferry-api-key', 'FERRY_API_KEY not from the Secret ferry-api-key');
  assert(key.valueFrom.secretKeyRef.optional !== true, 'the Secret is optional: a pod would serve without a key');
});

await check('the model volume is the PVC, read-only for the server', () => {
  const pvc = find('PersistentVolumeClaim');
  const volume = deployment.spec.template.spec.volumes.find((v) => v.persistentVolumeClaim);
  assert(volume.persistentVolumeClaim.claimName === pvc.metadata.name, 'volume claims ' +
    volume.persistentVolumeClaim.claimName);
  const mount = container.volumeMounts.find((m) => m.name === volume.name);
  assert(mount.readOnly === true && container.args.includes('--model-repository=' + mount.mountPath),
    'repository mount ' + JSON.stringify(mount));
});

await check('Service, PodDisruptionBudget and ServiceMonitor select the pods and name real ports', () => {
  const service = find('Service');
  assert(selects(service.spec.selector), 'the Service selects no ferry pod');
  for (const p of service.spec.ports) assert(portNames.has(p.targetPort), 'Service targetPort ' + p.targetPort);
  assert(selects(find('PodDisruptionBudget').spec.selector.matchLabels), 'the PDB selects no ferry pod');
  const monitor = find('ServiceMonitor');
  assert(Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels[k] === v),
    'the ServiceMonitor selects no ferry Service');
  const servicePorts = new Set(service.spec.ports.map((p) => p.name));
  for (const e of monitor.spec.endpoints) {
    assert(servicePorts.has(e.port) && e.path === '/metrics', 'endpoint ' + JSON.stringify(e));
  }
});

await check('the HPA and the GPU patch target the Deployment', () => {
  const hpa = find('HorizontalPodAutoscaler');
  assert(hpa.spec.scaleTargetRef.kind === 'Deployment' && hpa.spec.scaleTargetRef.name === deployment.metadata.name,
    'HPA target ' + JSON.stringify(hpa.spec.scaleTargetRef));
  const patch = load(`${base}/gpu/gpu-patch.yaml`)[0];
  const patched = patch.spec.template.spec.containers[0];
  assert(patch.metadata.name === deployment.metadata.name && patched.name === container.name, 'patch target');
  assert(patched.resources.limits['nvidia.com/gpu'] === 1, 'no nvidia.com/gpu limit');
});

await check('KServe: the ClusterServingRuntime serves format ferry from /mnt/models with health probes', async () => {
  const [runtime] = load('deploy/kserve/cluster-serving-runtime.yaml');
  assert(runtime.apiVersion === 'serving.kserve.io/v1alpha1' && runtime.kind === 'ClusterServingRuntime', 'kind');
  assert(runtime.spec.supportedModelFormats.some((f) => f.name === 'ferry'), 'no model format ferry');
  const c = runtime.spec.containers[0];
  assert(c.name === 'kserve-container', 'KServe expects the container kserve-container, got ' + c.name);
  assert(c.args.includes('--model-repository=/mnt/models'), 'the repository is not where KServe puts the model');
  const port = c.ports[0].containerPort;
  assert(c.args.includes('--http-port=' + port), 'ferry does not listen on the container port ' + port);
  assert(c.readinessProbe.httpGet.path === '/v2/health/ready' && c.livenessProbe.httpGet.path === '/v2/health/live',
    'probes');
  // The container part is a Kubernetes container: check it against that schema.
  const { Pod } = await import('kubernetes-models/v1/Pod');
  new Pod({ metadata: { name: 'runtime' }, spec: { containers: [c] } }).validate();
});

await check('KServe: the InferenceService uses the ferry runtime and a storageUri', () => {
  const [isvc] = load('deploy/kserve/inference-service.yaml');
  const [runtime] = load('deploy/kserve/cluster-serving-runtime.yaml');
  assert(isvc.apiVersion === 'serving.kserve.io/v1beta1' && isvc.kind === 'InferenceService', 'kind');
  const model = isvc.spec.predictor.model;
  assert(model.runtime === runtime.metadata.name && model.modelFormat.name === 'ferry', 'runtime/format');
  assert(/^(pvc|s3|gs|hf|https?):\/\//.test(model.storageUri), 'storageUri ' + model.storageUri);
});

console.log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
