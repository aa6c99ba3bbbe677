// Who serves the socket (issue #14, item 4): checked on every new connection, before anything
// is sent on it.
//
// Node has no SO_PEERCRED (neither net.Socket nor any core module reads a Unix socket's peer
// credentials), so this client checks the socket *file*: it must be a socket (not a symlink)
// owned by the expected uid, in directories no other user can write (sticky ones excepted), so
// that no other user can have bound it or swapped it between the check and the connect. The
// Java client reads the connection's real peer credentials; SECURITY.md says what the
// difference leaves open.
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as grpc from '@grpc/grpc-js';

import { UntrustedAgentError } from './errors';

/** The environment variable naming the uid the agent must run as (a number, or `off`). */
export const EXPECTED_UID_ENV = 'PSST_EXPECTED_UID';

/**
 * The uid the agent must run as: the option (a number, or `false` to skip the check), else
 * `$PSST_EXPECTED_UID` (a number, or `off`), else undefined: the socket file's owner when first
 * seen, pinned for the client's life.
 */
export function resolveExpectedUid(option: number | false | undefined, env: NodeJS.ProcessEnv = process.env): number | false | undefined {
  if (option === false) return false;
  if (option !== undefined) {
    if (!Number.isInteger(option) || option < 0) throw new RangeError('expectedUid must be a uid (an integer >= 0) or false');
    return option;
  }
  const fromEnv = env[EXPECTED_UID_ENV]?.trim();
  if (!fromEnv) return undefined;
  if (fromEnv === 'off') return false;
  if (!/^\d+$/.test(fromEnv)) throw new RangeError(`${EXPECTED_UID_ENV} must be a uid or "off", not ${JSON.stringify(fromEnv)}`);
  return Number(fromEnv);
}

const untrusted = (why: string, expected?: number) =>
  new UntrustedAgentError(
    grpc.status.UNAUTHENTICATED,
    `refusing the agent's socket: ${why}${expected === undefined ? '' : ` (the agent is expected to run as uid ${expected})`}`,
  );

/**
 * Checks the socket at `socketPath` against `expectedUid` and returns its owner; throws an
 * {@link UntrustedAgentError} saying why it is refused.
 */
export function checkSocket(socketPath: string, expectedUid: number | undefined, selfUid = process.getuid?.() ?? -1): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (err) {
    throw untrusted(`cannot inspect ${socketPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!st.isSocket()) throw untrusted(`${socketPath} is not a socket${st.isSymbolicLink() ? ' (a symbolic link)' : ''}`);
  if (expectedUid !== undefined && st.uid !== expectedUid) {
    throw untrusted(`${socketPath} belongs to uid ${st.uid}, not the expected uid ${expectedUid}`);
  }
  const expected = expectedUid ?? st.uid;
  const trusted = new Set([0, st.uid, selfUid]);
  // The real directories: a symlinked /var/run is judged by where it leads.
  let realDir: string;
  try {
    realDir = fs.realpathSync(path.dirname(socketPath));
  } catch (err) {
    throw untrusted(`cannot resolve the directory of ${socketPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  for (let dir = realDir; ; dir = path.dirname(dir)) {
    const d = fs.statSync(dir);
    const sticky = (d.mode & 0o1000) !== 0;
    if (!trusted.has(d.uid)) throw untrusted(`${dir} belongs to uid ${d.uid}, who could replace the socket`, expected);
    if ((d.mode & 0o022) !== 0 && !sticky) throw untrusted(`${dir} is writable by other users, who could replace the socket`, expected);
    if (dir === path.dirname(dir)) break;
  }
  return st.uid;
}

type Connector = ReturnType<grpc.ChannelCredentials['_createSecureConnector']>;

/**
 * Insecure channel credentials (the socket is local; the agent identifies us by the kernel) that
 * run `check` on each new connection before HTTP/2 starts on it. A refused connection is closed
 * and reported to `onRefused`; grpc-js then treats it as a failed connect and tries again later.
 */
export class CheckedSocketCredentials extends grpc.ChannelCredentials {
  readonly #check: () => void;
  readonly #onRefused: (error: UntrustedAgentError) => void;

  constructor(check: () => void, onRefused: (error: UntrustedAgentError) => void) {
    super();
    this.#check = check;
    this.#onRefused = onRefused;
  }

  override _isSecure(): boolean {
    return false;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(...args: Parameters<grpc.ChannelCredentials['_createSecureConnector']>): Connector {
    const inner = grpc.credentials.createInsecure()._createSecureConnector(...args);
    return {
      connect: async (socket) => {
        try {
          this.#check();
        } catch (err) {
          socket.destroy();
          const error = err instanceof UntrustedAgentError ? err : untrusted(String(err));
          this.#onRefused(error);
          throw error;
        }
        return inner.connect(socket);
      },
      waitForReady: () => inner.waitForReady(),
      getCallCredentials: () => inner.getCallCredentials(),
      destroy: () => inner.destroy(),
    };
  }
}
