// Starts the fauxqs SQS-protocol server for the outbox tests, bound to loopback only.
//
// fauxqs's own CLI listens on 0.0.0.0; this script builds the same app with buildApp() and
// listens on FAUXQS_LISTEN_HOST (default 127.0.0.1) and FAUXQS_PORT (default 4566).
//
// fauxqs writes queue URLs as http://sqs.<region>.localhost:<port>/..., a name that does not
// resolve everywhere, and the AWS SDK sends each request to its queue URL's host. An SqsStore
// whose host is empty makes queue URLs follow the host the client used (127.0.0.1:4566).
// SqsStore is not exported by the package, so it is imported from its file.
import { buildApp } from "fauxqs";

// The package entry point is dist/app.js; its store sits next to it.
const { SqsStore } = await import(new URL("./sqs/sqsStore.js", import.meta.resolve("fauxqs")).href);

const host = process.env.FAUXQS_LISTEN_HOST || "127.0.0.1";
const port = Number(process.env.FAUXQS_PORT || "4566");
if (host !== "127.0.0.1" && host !== "::1" && host !== "localhost") {
  console.error(`fauxqs: refusing to listen on ${host}: loopback only`);
  process.exit(2);
}

const sqsStore = new SqsStore();
sqsStore.host = "";
const app = buildApp({ logger: process.env.FAUXQS_LOGGER === "true", stores: { sqsStore } });
const address = await app.listen({ host, port });
console.log(`fauxqs listening on ${address}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await app.close();
    process.exit(0);
  });
}
