import assert from "node:assert/strict";
import { qemuArgs } from "./qemu_args.ts";
import { runDirPaths } from "./run_dir.ts";
import type { VirtualMachineSpec } from "./vm_spec.ts";

const paths = runDirPaths("/run/vat/app,1");

function spec(overrides: Partial<VirtualMachineSpec> = {}): VirtualMachineSpec {
  return {
    runDir: paths.dir,
    disks: {
      system: { socketPath: "/run/vat/nbd.sock", exportName: "system" },
      ephemeral: { socketPath: "/run/vat/nbd.sock", exportName: "scratch" },
      user: { socketPath: "/run/vat/user.sock", exportName: "user", readOnly: true },
    },
    ...overrides,
  };
}

/** The values following each occurrence of `option`. */
function values(args: string[], option: string): string[] {
  return args.flatMap((arg, i) => arg === option ? [args[i + 1]] : []);
}

Deno.test("qemuArgs() attaches the disks over NBD in the order system, user, ephemeral", () => {
  const args = qemuArgs(spec(), paths, "tcg");
  const blockdevs = values(args, "-blockdev").map((v) => JSON.parse(v));
  assert.deepEqual(blockdevs, [
    {
      driver: "nbd",
      "node-name": "system",
      server: { type: "unix", path: "/run/vat/nbd.sock" },
      export: "system",
      "read-only": false,
      discard: "unmap",
    },
    {
      driver: "nbd",
      "node-name": "user",
      server: { type: "unix", path: "/run/vat/user.sock" },
      export: "user",
      "read-only": true,
      discard: "unmap",
    },
    {
      driver: "nbd",
      "node-name": "ephemeral",
      server: { type: "unix", path: "/run/vat/nbd.sock" },
      export: "scratch",
      "read-only": false,
      discard: "unmap",
    },
  ]);
  const devices = values(args, "-device").filter((v) => v.startsWith("{")).map((v) =>
    JSON.parse(v)
  );
  assert.deepEqual(devices.map((d) => [d.drive, d.serial, d.bootindex]), [
    ["system", "system", 0],
    ["user", "user", undefined],
    ["ephemeral", "ephemeral", undefined],
  ]);
});

Deno.test("qemuArgs() boots a kernel instead of the disk when given one", () => {
  const args = qemuArgs(
    spec({ boot: { kernel: "/k,1", initrd: "/i", append: "console=ttyS0" } }),
    paths,
    "kvm",
  );
  assert.deepEqual(values(args, "-kernel"), ["/k,1"]);
  assert.deepEqual(values(args, "-initrd"), ["/i"]);
  assert.deepEqual(values(args, "-append"), ["console=ttyS0"]);
  assert.deepEqual(values(args, "-accel"), ["kvm"]);
  const system = JSON.parse(values(args, "-device").find((v) => v.includes('"system"'))!);
  assert.equal(system.bootindex, undefined);
});

Deno.test("qemuArgs() starts paused, without reboot, with QMP, console and pid file", () => {
  const args = qemuArgs(spec({ cpus: 2, memoryMiB: 1024 }), paths, "tcg");
  for (const flag of ["-S", "-no-reboot", "-nodefaults", "-no-user-config"]) {
    assert.ok(args.includes(flag), flag);
  }
  assert.deepEqual(values(args, "-smp"), ["2"]);
  assert.deepEqual(values(args, "-m"), ["1024"]);
  assert.deepEqual(values(args, "-machine"), ["pc"]);
  assert.deepEqual(values(args, "-pidfile"), ["/run/vat/app,1/qemu.pid"]);
  // Commas in paths are doubled inside QEMU's key=value options.
  assert.deepEqual(values(args, "-chardev"), [
    "socket,id=console,path=/run/vat/app,,1/console.sock,server=on,wait=off," +
    "logfile=/run/vat/app,,1/console.log,logappend=on",
    "socket,id=qmp,path=/run/vat/app,,1/qmp.sock,server=on,wait=off",
  ]);
  assert.deepEqual(values(args, "-serial"), ["chardev:console"]);
  // VNC on the run directory's Unix socket only: no TCP port, no websocket.
  assert.deepEqual(values(args, "-vnc"), ["unix:/run/vat/app,,1/vnc.sock"]);
  assert.deepEqual(values(args, "-nic"), ["none"]);
  assert.deepEqual(values(args, "-incoming"), []);
  assert.ok(values(args, "-device").includes("pvpanic"));
});

Deno.test("qemuArgs() waits for a memory image when resuming, and can drop the display", () => {
  const args = qemuArgs(
    spec({ resumeFrom: "/m", display: false, machine: "pc-i440fx-7.2", network: "user" }),
    paths,
    "tcg",
  );
  assert.deepEqual(values(args, "-incoming"), ["defer"]);
  assert.deepEqual(values(args, "-vnc"), []);
  assert.ok(!args.includes("VGA"));
  assert.deepEqual(values(args, "-machine"), ["pc-i440fx-7.2"]);
  assert.deepEqual(values(args, "-nic"), ["user,model=virtio-net-pci"]);
});
