/**
 * The Helm chart (deploy/helm/activity-aggregate-updater), rendered with
 * `helm template` through scripts/helm.sh (which installs the pinned Helm from
 * the Go module proxy the first time: a few minutes on a fresh machine) and
 * read back as Kubernetes objects: probes, ports, environment, security
 * context, and the checks that stop a bad release from rendering.
 */
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";

const root = new URL("../../", import.meta.url).pathname;
const chart = `${root}deploy/helm/activity-aggregate-updater`;

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command("bash", {
    args: [`${root}scripts/helm.sh`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** `helm template` with a values file made of `values`; fails the test when helm fails. */
async function render(values: Obj = {}): Promise<Obj[]> {
  const { code, stdout, stderr } = await template(values);
  assert.equal(code, 0, `helm template failed: ${stderr}`);
  return parseAllDocuments(stdout)
    .map((document) => document.toJS() as Obj | null)
    .filter((object): object is Obj => object !== null);
}

async function template(values: Obj): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(file, JSON.stringify(values)); // JSON is YAML
    return await helm(["template", "aau", chart, "--namespace", "lern", "-f", file]);
  } finally {
    await Deno.remove(file);
  }
}

function only(objects: Obj[], kind: string): Obj {
  const found = objects.filter((object) => object.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0];
}

function container(objects: Obj[]): Obj {
  const containers = only(objects, "Deployment").spec.template.spec.containers;
  assert.equal(containers.length, 1);
  return containers[0];
}

const chartYaml = parse(await Deno.readTextFile(`${chart}/Chart.yaml`)) as Obj;
const defaultValues = parse(await Deno.readTextFile(`${chart}/values.yaml`)) as Obj;

Deno.test("helm lint --strict passes with default and with custom values", async () => {
  for (
    const extra of [[], [
      "--set",
      "replicaCount=4,kafka.inputTopicPartitions=4,metrics.serviceMonitor.enabled=true",
    ]]
  ) {
    const { code, stdout, stderr } = await helm(["lint", "--strict", chart, ...extra]);
    assert.equal(code, 0, `helm lint ${extra.join(" ")}: ${stdout}${stderr}`);
    assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

Deno.test("default values: one replica, probes, port 9464, Sunbird's configuration", async () => {
  const objects = await render();
  assert.deepEqual(
    objects.map((object) => object.kind).sort(),
    ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"],
  );
  const deployment = only(objects, "Deployment");
  assert.equal(deployment.spec.replicas, 1);
  assert.deepEqual(deployment.spec.strategy.rollingUpdate, { maxSurge: 0, maxUnavailable: 1 });
  const pod = deployment.spec.template.spec;
  // SHUTDOWN_TIMEOUT 25s + 5 s.
  assert.equal(pod.terminationGracePeriodSeconds, 30);
  assert.equal(pod.automountServiceAccountToken, false);

  const main = container(objects);
  assert.equal(
    main.image,
    `ghcr.io/sunbird-lern/activity-aggregate-updater:${chartYaml.appVersion}`,
  );
  assert.equal(main.args, undefined, "the image's default command (run)");
  assert.deepEqual(main.ports, [{ name: "http", containerPort: 9464, protocol: "TCP" }]);
  assert.equal(main.livenessProbe.httpGet.path, "/healthz");
  assert.equal(main.livenessProbe.httpGet.port, "http");
  assert.equal(main.readinessProbe.httpGet.path, "/readyz");
  assert.equal(main.readinessProbe.httpGet.port, "http");
  assert.deepEqual(main.resources, {
    requests: { cpu: "100m", memory: "192Mi" },
    limits: { memory: "384Mi" },
  });

  // The whole environment comes from the ConfigMap; no Secret unless asked for.
  const configMap = only(objects, "ConfigMap");
  assert.deepEqual(main.envFrom, [{ configMapRef: { name: configMap.metadata.name } }]);
  assert.equal(main.env, undefined);
  const env = configMap.data as Record<string, unknown>;
  assert.equal(env.JOB_ENV, "dev");
  assert.equal(env.KAFKA_BROKER_SERVERS, "kafka:9092");
  assert.equal(env.LMS_CASSANDRA_HOST, "cassandra");
  assert.equal(env.LMS_CASSANDRA_KEYSPACE, "sunbird_courses");
  assert.equal(env.REDIS_HOST, "redis-master");
  assert.equal(env.SERVICE_SEARCH_BASEPATH, "http://search-service:9000");
  assert.equal(env.SHUTDOWN_TIMEOUT, "25s");
  assert.equal(env.HTTP_HOST, "0.0.0.0");
  assert.equal(env.HTTP_PORT, "9464");
  // Empty values are left to the job's defaults (topics derived from JOB_ENV).
  for (const name of ["KAFKA_INPUT_TOPIC", "KAFKA_GROUPID", "DEDUP_REDIS_HOST"]) {
    assert.equal(name in env, false, `${name} should be left out`);
  }
  for (const [name, value] of Object.entries(env)) {
    assert.equal(typeof value, "string", `${name} must be a string`);
    assert.notEqual(value, "", `${name} is empty`);
  }

  const service = only(objects, "Service");
  assert.deepEqual(service.spec.ports, [
    { name: "http", port: 9464, targetPort: "http", protocol: "TCP" },
  ]);
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
  const template = deployment.spec.template;
  for (const [key, value] of Object.entries(deployment.spec.selector.matchLabels)) {
    assert.equal(template.metadata.labels[key], value);
  }
  assert.equal(template.metadata.annotations["prometheus.io/scrape"], "true");
  assert.equal(template.metadata.annotations["prometheus.io/port"], "9464");
  assert.equal(template.metadata.annotations["prometheus.io/path"], "/metrics");

  const pdb = only(objects, "PodDisruptionBudget");
  assert.equal(pdb.spec.maxUnavailable, 1);
  assert.equal(pdb.spec.minAvailable, undefined);
  assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
});

Deno.test("default values: non-root, read-only root filesystem, nothing privileged", async () => {
  const objects = await render();
  const pod = only(objects, "Deployment").spec.template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 65532);
  assert.equal(pod.securityContext.runAsGroup, 65532);
  assert.deepEqual(pod.securityContext.seccompProfile, { type: "RuntimeDefault" });
  const main = container(objects);
  assert.equal(main.securityContext.readOnlyRootFilesystem, true);
  assert.equal(main.securityContext.allowPrivilegeEscalation, false);
  assert.equal(main.securityContext.privileged, false);
  assert.deepEqual(main.securityContext.capabilities, { drop: ["ALL"] });
  // The only writable path: /tmp, an emptyDir.
  assert.deepEqual(main.volumeMounts, [{ name: "tmp", mountPath: "/tmp" }]);
  assert.deepEqual(pod.volumes, [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }]);
});

Deno.test("values.yaml sets every variable of README's Configuration table", async () => {
  const readme = await Deno.readTextFile(`${root}README.md`);
  const section = readme.split("\n## Configuration\n")[1].split("\n## ")[0];
  const documented = new Set<string>();
  for (const line of section.split("\n").filter((line) => line.startsWith("| `"))) {
    const firstCell = line.split("|")[1];
    for (const [, name] of firstCell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) documented.add(name);
  }
  assert.ok(documented.size >= 30, `parsed only ${documented.size} variables from README`);
  const chartOwned = new Set(["HTTP_HOST", "HTTP_PORT"]); // from httpPort
  const missing = [...documented].filter((name) =>
    !chartOwned.has(name) && !(name in defaultValues.config)
  );
  assert.deepEqual(missing, [], "add these to config: in values.yaml");
});

Deno.test("custom values: replicas, port, secrets, ServiceMonitor, grace period", async () => {
  const objects = await render({
    replicaCount: 3,
    kafka: { inputTopicPartitions: 6 },
    httpPort: 9500,
    service: { port: 80 },
    image: { repository: "registry.example/aau", digest: "sha256:" + "ab".repeat(32) },
    config: {
      JOB_ENV: "staging",
      KAFKA_INPUT_TOPIC: "staging.custom.input",
      LMS_CASSANDRA_HOST: "cassandra-0.cassandra,cassandra-1.cassandra",
      DEDUP_REDIS_DATABASE_EXPIRY: 1209600, // a YAML number: must not become 1.2096e+06
      ACTIVITY_MODULE_AGGS_ENABLED: false,
      SHUTDOWN_TIMEOUT: "1m",
    },
    existingSecret: "aau-credentials",
    secretEnv: [{ name: "LMS_CASSANDRA_PASSWORD", secretName: "lern-cassandra", key: "password" }],
    extraEnv: [{ name: "EXTRA", value: "1" }],
    metrics: { serviceMonitor: { enabled: true, labels: { release: "prometheus" } } },
    podDisruptionBudget: { minAvailable: 2, maxUnavailable: null },
  });
  assert.deepEqual(
    objects.map((object) => object.kind).sort(),
    ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceMonitor"],
  );
  const deployment = only(objects, "Deployment");
  assert.equal(deployment.spec.replicas, 3);
  // 1m = 60 s, + 5 s.
  assert.equal(deployment.spec.template.spec.terminationGracePeriodSeconds, 65);

  const main = container(objects);
  assert.equal(main.image, `registry.example/aau@sha256:${"ab".repeat(32)}`);
  assert.deepEqual(main.ports, [{ name: "http", containerPort: 9500, protocol: "TCP" }]);
  assert.equal(main.livenessProbe.httpGet.port, "http");
  const configMap = only(objects, "ConfigMap");
  // The Secret comes after the ConfigMap, so its variables win.
  assert.deepEqual(main.envFrom, [
    { configMapRef: { name: configMap.metadata.name } },
    { secretRef: { name: "aau-credentials" } },
  ]);
  assert.deepEqual(main.env, [
    {
      name: "LMS_CASSANDRA_PASSWORD",
      valueFrom: { secretKeyRef: { name: "lern-cassandra", key: "password" } },
    },
    { name: "EXTRA", value: "1" },
  ]);
  assert.equal(configMap.data.JOB_ENV, "staging");
  assert.equal(configMap.data.KAFKA_INPUT_TOPIC, "staging.custom.input");
  assert.equal(configMap.data.LMS_CASSANDRA_HOST, "cassandra-0.cassandra,cassandra-1.cassandra");
  assert.equal(configMap.data.DEDUP_REDIS_DATABASE_EXPIRY, "1209600");
  assert.equal(configMap.data.ACTIVITY_MODULE_AGGS_ENABLED, "false");
  assert.equal(configMap.data.HTTP_PORT, "9500");
  // Values not overridden keep their defaults.
  assert.equal(configMap.data.REDIS_HOST, "redis-master");

  const service = only(objects, "Service");
  assert.deepEqual(service.spec.ports, [
    { name: "http", port: 80, targetPort: "http", protocol: "TCP" },
  ]);
  assert.equal(deployment.spec.template.metadata.annotations["prometheus.io/port"], "9500");
  const monitor = only(objects, "ServiceMonitor");
  assert.equal(monitor.metadata.labels.release, "prometheus");
  // Selects the Service, whose labels include the pods' selector labels.
  for (const [key, value] of Object.entries(monitor.spec.selector.matchLabels)) {
    assert.equal(service.metadata.labels[key], value);
  }
  assert.deepEqual(monitor.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  assert.deepEqual(monitor.spec.endpoints.map((e: Obj) => [e.port, e.path]), [[
    "http",
    "/metrics",
  ]]);
  assert.deepEqual(monitor.spec.namespaceSelector, { matchNames: ["lern"] });
  const pdb = only(objects, "PodDisruptionBudget");
  assert.equal(pdb.spec.minAvailable, 2);
  assert.equal(pdb.spec.maxUnavailable, undefined);
});

Deno.test("terminationGracePeriodSeconds follows SHUTDOWN_TIMEOUT in each of its forms", async () => {
  const cases: [Obj, number][] = [
    [{ config: { SHUTDOWN_TIMEOUT: "40" } }, 45], // a bare number is seconds
    [{ config: { SHUTDOWN_TIMEOUT: "2500ms" } }, 8], // rounded up to 3, + 5
    [{ config: { SHUTDOWN_TIMEOUT: "" } }, 30], // the job's default, 25s
    [{ terminationGracePeriodSeconds: 120 }, 120], // given, and long enough
  ];
  for (const [values, expected] of cases) {
    const pod = only(await render(values), "Deployment").spec.template.spec;
    assert.equal(pod.terminationGracePeriodSeconds, expected, JSON.stringify(values));
  }
});

Deno.test("a configuration change changes the pod template (the pods roll)", async () => {
  const checksum = async (values: Obj) =>
    only(await render(values), "Deployment").spec.template.metadata.annotations["checksum/config"];
  const before = await checksum({});
  assert.match(before, /^[0-9a-f]{64}$/);
  assert.equal(await checksum({}), before);
  assert.notEqual(await checksum({ config: { LOG_LEVEL: "debug" } }), before);
});

Deno.test("values that would deploy a broken job stop the rendering", async () => {
  const cases: [Obj, RegExp][] = [
    [
      { replicaCount: 5, kafka: { inputTopicPartitions: 4 } },
      /replicaCount=5 exceeds kafka\.inputTopicPartitions=4/,
    ],
    [{ replicaCount: 2 }, /replicaCount=2 exceeds kafka\.inputTopicPartitions=1/],
    [
      { terminationGracePeriodSeconds: 29 },
      /terminationGracePeriodSeconds=29 must be at least SHUTDOWN_TIMEOUT \(25s\) \+ 5 = 30/,
    ],
    [
      { config: { SHUTDOWN_TIMEOUT: "1m" }, terminationGracePeriodSeconds: 60 },
      /at least SHUTDOWN_TIMEOUT \(60s\) \+ 5 = 65/,
    ],
    [
      { config: { SHUTDOWN_TIMEOUT: "soon" } },
      /config\.SHUTDOWN_TIMEOUT="soon": expected a duration/,
    ],
    [{ config: { HTTP_PORT: "8080" } }, /config\.HTTP_PORT is set by the chart/],
    [{ podDisruptionBudget: { minAvailable: 1 } }, /set minAvailable or maxUnavailable, not both/],
    [
      { metrics: { serviceMonitor: { enabled: true } }, service: { enabled: false } },
      /needs service\.enabled/,
    ],
    [{ secretEnv: [{ name: "X", key: "k" }] }, /needs name, key and secretName/],
  ];
  for (const [values, message] of cases) {
    const { code, stderr } = await template(values);
    assert.notEqual(code, 0, `rendered despite ${JSON.stringify(values)}`);
    assert.match(stderr, message);
  }
  // The boundary is allowed: as many replicas as partitions.
  const objects = await render({ replicaCount: 4, kafka: { inputTopicPartitions: 4 } });
  assert.equal(only(objects, "Deployment").spec.replicas, 4);
});

Deno.test("PodDisruptionBudget keeps the maxUnavailable given, 0 and percentages too", async () => {
  for (const [given, expected] of [[0, 0], ["50%", "50%"], [null, 1]] as const) {
    const objects = await render({ podDisruptionBudget: { maxUnavailable: given } });
    assert.equal(only(objects, "PodDisruptionBudget").spec.maxUnavailable, expected);
  }
  const objects = await render({ podDisruptionBudget: { enabled: false } });
  assert.equal(objects.some((object) => object.kind === "PodDisruptionBudget"), false);
});
