// A Haraka plugin for the interoperability tests (tests/support/interop/haraka.py copies it
// into the instance's plugins/ folder). Every recipient but the configured refused
// one is accepted (Haraka refuses any RCPT that no plugin accepts), and each queued
// message is written, as Haraka received it, to one file in a folder: the mailbox
// the tests read back. Settings: config/interop_queue.ini, [main] folder, refused.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

exports.register = function () {
  this.cfg = this.config.get("interop_queue.ini");
  // An authenticated client relays: Haraka queues its mail with queue_outbound,
  // which would otherwise try to deliver to the recipients' MX hosts.
  this.register_hook("queue", "store");
  this.register_hook("queue_outbound", "store");
};

exports.hook_rcpt = function (next, connection, params) {
  if (params[0].address === this.cfg.main.refused) {
    return next(DENY, "5.1.1 no such user here");
  }
  next(OK);
};

exports.store = function (next, connection) {
  const txn = connection.transaction;
  // Written under a dot name, then renamed: the tests only ever see whole messages.
  const partial = path.join(this.cfg.main.folder, `.${txn.uuid}`);
  const out = fs.createWriteStream(partial);
  out.once("error", (err) => next(DENYSOFT, `cannot store: ${err.message}`));
  out.once("close", () => {
    fs.renameSync(partial, path.join(this.cfg.main.folder, `${txn.uuid}.eml`));
    next(OK);
  });
  txn.message_stream.pipe(out);
};
