/** A server started for a test run: loopback only, a free port, data in a temporary directory. */
export interface RunningServer {
  /** Connection URL for the driver, e.g. `postgres://postgres:<password>@127.0.0.1:54321/postgres`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops and starts the server again on the same port with the same data (to test reconnection). */
  restart(): Promise<void>;
  /** Stops the server and removes its temporary directory. Idempotent. */
  stop(): Promise<void>;
}
