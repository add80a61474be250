/**
 * The QEMU supervisor against real QEMU (TCG: some hosts' KVM hangs Linux guests)
 * running the test appliance (`vat/demo/busybox_appliance.ts`), whose disks vat's own
 * NBD server serves from files. Every test checks that it leaves no QEMU process and
 * no socket behind.
 */

import assert from "node:assert/strict";
import { buildBusyboxAppliance, type BusyboxAppliance } from "../vat/demo/busybox_appliance.ts";
import { FileDevice } from "../vat/disk/file_device.ts";
import { type NbdServer, serveNbd } from "../vat/nbd/nbd_server.ts";
import { QemuError, VirtualMachine } from "../vat/vmm/virtual_machine.ts";
import { reapOrphan, runDirPaths } from "../vat/vmm/run_dir.ts";
import type { VirtualMachineSpec } from "../vat/vmm/vm_spec.ts";
import { pathExists } from "../vat/fs_atomic.ts";
import { tcpSocketsOf } from "./helpers/proc_sockets.ts";

const MiB = 1024 * 1024;
const BOOT_TIMEOUT_MS = 60_000;
const REPLY_TIMEOUT_MS = 10_000;
const REPLY = /VAT-(REPLY|ERROR) \S+.*/;

/** An appliance's disks on files in a temporary directory, served over NBD. */
interface ServedAppliance {
  appliance: BusyboxAppliance;
  dir: string;
  /** A spec for a VM of these disks, in `dir/run`. */
  spec: VirtualMachineSpec;
}

/**
 * Runs `fn` with fresh copies of the appliance's disks (and a blank ephemeral disk)
 * served by `serveNbd()`; afterwards checks that no QEMU of the test runs and no
 * socket is left, and removes everything.
 */
async function withAppliance(fn: (served: ServedAppliance) => Promise<void>): Promise<void> {
  const appliance = await buildBusyboxAppliance();
  const dir = await Deno.makeTempDir({ prefix: "vat-vmm-" });
  const devices: FileDevice[] = [];
  let server: NbdServer | undefined;
  try {
    await Deno.copyFile(appliance.systemImage, `${dir}/system.img`);
    await Deno.copyFile(appliance.userImage, `${dir}/user.img`);
    const system = await FileDevice.open(`${dir}/system.img`);
    devices.push(system);
    const user = await FileDevice.open(`${dir}/user.img`);
    devices.push(user);
    const ephemeral = await FileDevice.create(`${dir}/ephemeral.img`, 64 * MiB);
    devices.push(ephemeral);
    const socketPath = `${dir}/nbd.sock`;
    server = serveNbd({
      exports: new Map([["system", system], ["user", user], ["ephemeral", ephemeral]]),
      socketPath,
    });
    const spec: VirtualMachineSpec = {
      runDir: `${dir}/run`,
      name: "test-appliance",
      memoryMiB: 256,
      disks: {
        system: { socketPath, exportName: "system" },
        user: { socketPath, exportName: "user" },
        ephemeral: { socketPath, exportName: "ephemeral" },
      },
      boot: { kernel: appliance.kernel, initrd: appliance.initrd, append: appliance.append },
    };
    await fn({ appliance, dir, spec });
    assert.deepEqual(await qemuProcessesUsing(dir), [], "a QEMU of the test still runs");
    assert.deepEqual(await socketsUnder(`${dir}/run`), [], "sockets left in the run directory");
  } finally {
    for (const pid of await qemuProcessesUsing(dir)) Deno.kill(pid, "SIGKILL");
    await server?.close();
    for (const device of devices) await device.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Starts a VM and waits until the appliance's command loop runs. */
async function boot(spec: VirtualMachineSpec): Promise<VirtualMachine> {
  const vm = await VirtualMachine.start(spec);
  try {
    await vm.console.waitForLine(/VAT-READY/, { timeoutMs: BOOT_TIMEOUT_MS });
  } catch (err) {
    await vm.kill();
    throw err;
  }
  return vm;
}

/** Sends one command to the appliance and returns its reply, without the prefix. */
async function command(vm: VirtualMachine, line: string): Promise<string> {
  const reply = await vm.console.request(line, REPLY, REPLY_TIMEOUT_MS);
  return reply.match[0];
}

/** The pids of processes whose command line mentions `qemu-system` and `dir`. */
async function qemuProcessesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let cmdline: string;
    try {
      cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`);
    } catch {
      continue; // It exited while we looked.
    }
    if (cmdline.includes("qemu-system") && cmdline.includes(dir)) pids.push(Number(entry.name));
  }
  return pids;
}

async function socketsUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const info = await Deno.lstat(`${dir}/${entry.name}`);
      if (info.isSocket) found.push(entry.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return found;
}

Deno.test("VirtualMachine boots over NBD, keeps user files across an ACPI powerdown", async () => {
  await withAppliance(async ({ spec }) => {
    let vm = await boot(spec);
    const events: string[] = [];
    vm.onEvent((event) => events.push(event.type));
    assert.equal(await command(vm, "cat /mnt/system/marker"), "VAT-REPLY cat system-v1");
    assert.equal(await command(vm, "disks"), "VAT-REPLY disks system user ephemeral");
    assert.equal(
      await command(vm, "write user note written-before-powerdown"),
      "VAT-REPLY write ok",
    );
    assert.equal(await command(vm, "sync"), "VAT-REPLY sync ok");
    assert.deepEqual(await vm.status(), { running: true, status: "running" });
    assert.ok(vm.vncSocket, "the VM has a screen");

    const exit = await vm.powerdown(30_000);
    assert.deepEqual(exit, { reason: "poweroff", code: 0, signal: null });
    assert.deepEqual(events, ["powerdown", "shutdown"]);
    assert.deepEqual(await vm.status(), { running: false, status: "exited" });
    const log = await Deno.readTextFile(runDirPaths(spec.runDir).consoleLog);
    assert.match(log, /VAT-POWEROFF acpi/);

    vm = await boot(spec);
    try {
      assert.equal(await command(vm, "read user note"), "VAT-REPLY read written-before-powerdown");
      assert.equal(await command(vm, "read user hello"), "VAT-REPLY read user-initial");
      // The appliance also powers off when asked through a file on its user disk.
      assert.equal(await command(vm, "write user poweroff-request now"), "VAT-REPLY write ok");
      assert.deepEqual(await vm.exited, { reason: "poweroff", code: 0, signal: null });
      assert.match(vm.console.text(), /VAT-POWEROFF request/);
    } finally {
      await vm.kill();
    }
  });
});

Deno.test("VirtualMachine shows its screen on a 0600 Unix socket in a 0700 directory, no TCP port", async () => {
  await withAppliance(async ({ dir, spec }) => {
    // A run directory left open by someone's umask is closed again.
    await Deno.mkdir(spec.runDir, { mode: 0o755 });
    await Deno.chmod(spec.runDir, 0o755);
    const vm = await VirtualMachine.start(spec);
    try {
      assert.equal(vm.vncSocket, runDirPaths(spec.runDir).vncSocket);
      assert.equal((await Deno.stat(spec.runDir)).mode! & 0o777, 0o700);
      for (const socket of [vm.vncSocket!, vm.paths.qmpSocket, vm.paths.consoleSocket]) {
        assert.equal((await Deno.lstat(socket)).mode! & 0o777, 0o600, socket);
      }
      assert.deepEqual(await tcpSocketsOf(vm.pid), [], "QEMU holds TCP sockets");
      // QEMU's VNC server answers on the socket by itself, booted or not.
      const conn = await Deno.connect({ transport: "unix", path: vm.vncSocket! });
      try {
        const buf = new Uint8Array(12);
        let got = 0;
        while (got < 12) got += (await conn.read(buf.subarray(got))) ?? 12;
        assert.equal(new TextDecoder().decode(buf), "RFB 003.008\n");
      } finally {
        conn.close();
      }
    } finally {
      await vm.kill();
    }
    // Without a display there is no socket at all.
    const headless = await VirtualMachine.start({ ...spec, display: false });
    try {
      assert.equal(headless.vncSocket, undefined);
      assert.equal(await pathExists(headless.paths.vncSocket), false);
    } finally {
      await headless.kill();
    }
    // A run directory that is a symlink (somebody else's place) is refused.
    await Deno.remove(spec.runDir, { recursive: true });
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, spec.runDir);
    await assert.rejects(VirtualMachine.start(spec), /is not a directory \(a symlink\?\)/);
    await Deno.remove(spec.runDir);
    await Deno.mkdir(spec.runDir);
  });
});

Deno.test("VirtualMachine.suspendTo() saves a memory image that start() resumes from", async () => {
  await withAppliance(async ({ dir, spec }) => {
    const vm = await boot(spec);
    assert.equal(await command(vm, "count"), "VAT-REPLY count 1");
    assert.equal(await command(vm, "count"), "VAT-REPLY count 2");
    const imagePath = `${dir}/memory.img`;
    const image = await vm.suspendTo(imagePath);
    assert.equal((await vm.exited).reason, "suspended");
    assert.equal(image.path, imagePath);
    assert.equal((await Deno.stat(imagePath)).size, image.sizeBytes);
    assert.ok(image.sizeBytes > MiB, `a memory image of ${image.sizeBytes} bytes is too small`);
    await assert.rejects(Deno.stat(`${imagePath}.partial`), Deno.errors.NotFound);

    const resumed = await VirtualMachine.start({
      ...spec,
      resumeFrom: imagePath,
      machine: image.machineType,
    });
    try {
      // The guest carries on where it stopped: no new boot, the counter in memory.
      assert.equal(await command(resumed, "count"), "VAT-REPLY count 3");
      assert.equal(await command(resumed, "read user hello"), "VAT-REPLY read user-initial");
      assert.doesNotMatch(resumed.console.text(), /VAT-READY/);
      // A paused guest cannot see the power button: QEMU is told to quit instead.
      await resumed.pause();
      assert.deepEqual(await resumed.status(), { running: false, status: "paused" });
      assert.deepEqual(await resumed.powerdown(500), { reason: "quit", code: 0, signal: null });
    } finally {
      await resumed.kill();
    }
  });
});

Deno.test("VirtualMachine reports a guest's kernel panic as the reason QEMU ended", async () => {
  await withAppliance(async ({ spec }) => {
    const vm = await boot(spec);
    try {
      assert.equal(await command(vm, "panic"), "VAT-REPLY panic ok");
      assert.deepEqual(await vm.exited, { reason: "panic", code: 0, signal: null });
    } finally {
      await vm.kill();
    }
  });
});

Deno.test("VirtualMachine reports a QEMU killed from outside as crashed", async () => {
  await withAppliance(async ({ spec }) => {
    const vm = await VirtualMachine.start({ ...spec, accel: "tcg" });
    Deno.kill(vm.pid, "SIGKILL");
    const exit = await vm.exited;
    assert.equal(exit.reason, "crashed");
    assert.equal(exit.signal, "SIGKILL");
    assert.ok(exit.error instanceof QemuError);
    assert.match(
      exit.error.message,
      /QEMU for test-appliance ended unexpectedly \(killed by SIGKILL\)/,
    );
    await assert.rejects(vm.pause(), /cannot pause test-appliance: its QEMU has exited/);
  });
});

Deno.test("VirtualMachine.start() names the reason QEMU cannot start, leaves nothing", async () => {
  await withAppliance(async ({ dir, spec }) => {
    const missing = `${dir}/no-such-kernel`;
    const error = await VirtualMachine.start({ ...spec, accel: "tcg", boot: { kernel: missing } })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof QemuError, `expected a QemuError, got ${error}`);
    assert.match(error.message, /QEMU for test-appliance exited while starting \(exit code 1\)/);
    assert.match(error.message, /could not open kernel file/);
    assert.ok(error.message.includes(missing), error.message);
  });
});

Deno.test("a QEMU dies with the VAT that started it, even on SIGKILL", async () => {
  await withAppliance(async ({ dir, spec }) => {
    const script = `${dir}/start_vm.ts`;
    const module = new URL("../vat/vmm/virtual_machine.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { VirtualMachine } from ${JSON.stringify(module)};\n` +
        `const vm = await VirtualMachine.start(${JSON.stringify({ ...spec, accel: "tcg" })});\n` +
        `console.log(vm.pid);\n` +
        `await new Promise(() => {});\n`,
    );
    const vat = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", script],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = vat.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    const pid = Number(value?.trim());
    assert.deepEqual(await qemuProcessesUsing(dir), [pid]);
    vat.kill("SIGKILL");
    await vat.status;
    await reader.cancel();
    const deadline = Date.now() + 5000;
    while ((await qemuProcessesUsing(dir)).length > 0) {
      assert.ok(Date.now() < deadline, "QEMU outlived its VAT");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Its sockets stay behind; the next start clears them.
    assert.equal(await reapOrphan(spec.runDir), undefined);
  });
});

Deno.test("reapOrphan() kills the QEMU a dead VAT left in its run directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vat-orphan-" });
  try {
    const paths = runDirPaths(dir);
    // A QEMU started without the parent-death safeguard, as an older VAT would have.
    const orphan = new Deno.Command("qemu-system-x86_64", {
      args: [
        "-machine",
        "none",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-pidfile",
        paths.pidFile,
        "-chardev",
        `socket,id=qmp,path=${paths.qmpSocket},server=on,wait=off`,
        "-mon",
        "chardev=qmp,mode=control",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    while (!await pathExists(paths.pidFile) || !await pathExists(paths.qmpSocket)) {
      assert.ok(Date.now() < deadline, "the orphan QEMU did not start");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await reapOrphan(dir), orphan.pid);
    assert.equal((await orphan.status).signal, "SIGKILL");
    assert.equal(await pathExists(paths.qmpSocket), false);
    assert.equal(await pathExists(paths.pidFile), false);
    assert.equal(await reapOrphan(dir), undefined, "nothing left to reap");
  } finally {
    for (const pid of await qemuProcessesUsing(dir)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});
