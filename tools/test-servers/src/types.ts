/** A server started for a test run: loopback only, a free port, data in a temporary directory. */
export interface RunningServer {
  /** Connection URL for the driver, e.g. `postgres://postgres:<password>@127.0.0.1:54321/postgres`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Stops and starts the server again on the same port with the same data (to test reconnection). */
  restart(): Promise<void>;
  /**
   * SIGKILL to every process of the server (PostgreSQL: the postmaster and all its children), no shutdown of any
   * kind; resolves when they have exited. The directory stays: `restart()` starts the server again on the same
   * port with whatever data survived (PostgreSQL runs crash recovery).
   */
  kill(): Promise<void>;
  /** SIGSTOP to every process of the server: connections stay open but nothing is answered. Resolves once stopped. */
  pause(): Promise<void>;
  /** SIGCONT to every process of the server after `pause()`; a no-op otherwise. */
  resume(): Promise<void>;
  /** Stops the server and removes its temporary directory. Idempotent. */
  stop(): Promise<void>;
}
