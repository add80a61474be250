/**
 * The TCP sockets a process holds, read from Linux's `/proc`: its open file
 * descriptors (`/proc/PID/fd/N -> socket:[INODE]`) matched against the kernel's TCP
 * tables (`/proc/net/tcp`, `/proc/net/tcp6`), which list every TCP socket of the
 * network namespace with its inode and state.
 *
 * @module
 */

/** One TCP socket of a process. */
export interface TcpSocket {
  /** `tcp` or `tcp6`. */
  table: string;
  /** The local address as the kernel writes it (hex address:port). */
  local: string;
  /** The local port. */
  port: number;
  /** The kernel's state code; `0A` is LISTEN. */
  state: string;
  listening: boolean;
  inode: string;
}

/** Every TCP socket (IPv4 and IPv6, any state) that process `pid` has open. */
export async function tcpSocketsOf(pid: number): Promise<TcpSocket[]> {
  const inodes = new Set<string>();
  for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`);
    } catch (err) {
      // Closed between the listing and the read.
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]);
  }
  const found: TcpSocket[] = [];
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/net/${table}`);
    } catch (err) {
      // A kernel without IPv6 has no tcp6 table.
      if (err instanceof Deno.errors.NotFound) continue;
      throw err;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const [, local, , state] = fields;
      const inode = fields[9];
      if (!inodes.has(inode)) continue;
      found.push({
        table,
        local,
        port: parseInt(local.slice(local.lastIndexOf(":") + 1), 16),
        state,
        listening: state === "0A",
        inode,
      });
    }
  }
  return found;
}
