// A WebSocket stand-in for the node tests: records what the module sends and
// lets a test deliver frames.
import assert from "node:assert/strict";

export class FakeSocket {
  static last = null;
  sent = [];
  closedWith = null;
  onopen = null;
  onclose = null;
  onerror = null;
  onmessage = null;
  constructor(url) {
    this.url = url;
    FakeSocket.last = this;
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.onclose?.({ code, reason });
  }
  open() {
    this.onopen?.({});
  }
  deliver(value) {
    this.onmessage?.({ data: typeof value === "string" ? value : JSON.stringify(value) });
  }
  /** Waits until the module has sent `count` frames in all. */
  async sentAtLeast(count) {
    for (let i = 0; i < 1000 && this.sent.length < count; i++) await new Promise((r) => setImmediate(r));
    assert.ok(this.sent.length >= count, `expected ${count} frames, got ${JSON.stringify(this.sent)}`);
    return this.sent;
  }
}

