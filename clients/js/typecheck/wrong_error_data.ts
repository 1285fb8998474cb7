// Must NOT type-check: narrowed to `NotInRoom`, an error without data, the
// error's `data` is not a string. The schema test runs tsc --strict on this
// file and expects exactly error TS2322.
import { ChatErrors, isChatError } from "../chat.js";

declare const caught: unknown;
if (isChatError(caught) && caught.code === ChatErrors.NotInRoom) {
  const nick: string = caught.data;
  console.log(nick);
}
