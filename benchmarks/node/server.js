// The strongest peer for the end-to-end benchmarks: Node's ocpp-rpc (ws + ajv) as an OS3P Central System.
//
//   node benchmarks/node/server.js --port P [--host 127.0.0.1]
//
// Prints "READY node port=<port> pid=<pid>" once it listens (the same line e2e_server.py prints), stops on
// SIGTERM/SIGINT.  Strict mode with the OS3P schemas (schemas/*.json, draft-04, given to ajv as draft-07:
// the schemas use no keyword whose meaning differs between the two drafts): every request and every response
// is validated, as os3p does.  It answers BootNotification, Heartbeat and MeterValues and stores nothing.
"use strict";
const fs = require("fs");
const path = require("path");
const { RPCServer, createValidator } = require("ocpp-rpc");

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const host = opt("--host", "127.0.0.1");
const port = Number(opt("--port", "0"));
if (!host.startsWith("127.")) {
  console.error("loopback only (127.0.0.0/8)");
  process.exit(2);
}

const schemaDir = path.join(__dirname, "..", "..", "schemas");
const schemas = [];
for (const file of fs.readdirSync(schemaDir).sort()) {
  const m = /^(.*)(Request|Response)\.json$/.exec(file);
  if (!m) continue;
  const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, file), "utf8"));
  delete schema.id;
  schema.$schema = "http://json-schema.org/draft-07/schema";
  schema.$id = `urn:${m[1]}.${m[2] === "Request" ? "req" : "conf"}`;
  schemas.push(schema);
}

const server = new RPCServer({
  protocols: ["OS3P1.0"],
  strictMode: true,
  strictModeValidators: [createValidator("OS3P1.0", schemas)],
});

const now = () => new Date().toISOString();
let sampledValues = 0;
server.on("client", (client) => {
  client.handle("BootNotification", () => ({ status: "Accepted", currentTime: now(), interval: 300 }));
  client.handle("Heartbeat", () => ({ currentTime: now() }));
  client.handle("MeterValues", ({ params }) => {
    for (const mv of params.meterValue) sampledValues += mv.sampledValue.length;
    return {};
  });
  client.on("error", () => {});
});

server.listen(port, host, { backlog: 4096 }).then((httpServer) => {
  console.log(`READY node port=${httpServer.address().port} pid=${process.pid}`);
});

const stop = () => server.close({ awaitPending: false, force: true }).then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
