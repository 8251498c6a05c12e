// An SMTP server not written in Python, for the TLS and AUTH tests: the npm
// package smtp-server (PLAIN, LOGIN, CRAM-MD5, XOAUTH2; STARTTLS or implicit TLS).
// Usage: node server.js '<json config>'; prints "READY <port>", then one
// "MESSAGE <json>" line per message and "AUTH <json>" per attempt on stdout.
"use strict";
const fs = require("fs");
const { SMTPServer } = require("smtp-server");

const config = JSON.parse(process.argv[2]);
const users = config.users || {};
const tokens = config.tokens || {};

function emit(kind, obj) {
  process.stdout.write(kind + " " + JSON.stringify(obj) + "\n");
}

const server = new SMTPServer({
  secure: !!config.implicit,
  key: fs.readFileSync(config.key),
  cert: fs.readFileSync(config.cert),
  authMethods: config.authMethods || ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
  allowInsecureAuth: false,
  authOptional: !!config.authOptional,
  // RFC 8689: offered (over TLS) only when a test asks for it.
  hideREQUIRETLS: !config.requiretls,
  logger: false,
  onAuth(auth, session, callback) {
    let ok = false;
    if (auth.method === "XOAUTH2") {
      ok = tokens[auth.username] === auth.accessToken;
      emit("AUTH", { method: auth.method, username: auth.username, ok, secure: session.secure });
      if (!ok) {
        return callback(null, { data: { status: "401", schemes: "bearer", scope: "mail" } });
      }
    } else if (auth.method === "CRAM-MD5") {
      ok = auth.username in users && auth.validatePassword(users[auth.username]);
      emit("AUTH", { method: auth.method, username: auth.username, ok, secure: session.secure });
    } else {
      ok = users[auth.username] === auth.password;
      emit("AUTH", { method: auth.method, username: auth.username, ok, secure: session.secure });
    }
    if (!ok) return callback(new Error("Invalid username or password"));
    callback(null, { user: auth.username });
  },
  // The interoperability tests' partial refusal: any refused@ address.
  onRcptTo(address, session, callback) {
    if (address.address.startsWith("refused@")) {
      const err = new Error("5.1.1 no such user here");
      err.responseCode = 550;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on("data", (c) => chunks.push(c));
    stream.on("end", () => {
      emit("MESSAGE", {
        from: session.envelope.mailFrom.address,
        to: session.envelope.rcptTo.map((r) => r.address),
        user: session.user,
        secure: session.secure,
        requireTLS: !!session.envelope.requireTLS,
        content: Buffer.concat(chunks).toString("base64"),
      });
      callback(null, "Queued");
    });
  },
});

server.on("error", (err) => process.stderr.write("server error: " + err.message + "\n"));
server.listen(0, "127.0.0.1", () => {
  emit("READY", server.server.address().port);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
