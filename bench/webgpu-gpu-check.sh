#!/usr/bin/env bash
# The GPU check of the webgpu runtime: bench/webgpu.mjs at full settings (ViT-B/16 features at batch 32, a ViT-B block
# training step at batch 32, against onnxruntime on the CPU) on a real GPU's Vulkan adapter, on a machine that has a
# GPU and its driver but no network, no Node and maybe no Vulkan loader.
#
#   bench/webgpu-gpu-check.sh pack   Here, after `npm ci && npx tsc -b`: writes .gpucheck/ (git ignores it), everything
#                                    the check needs that such a machine lacks (about 55 MiB): this Node binary, the
#                                    built packages with their production node_modules (Linux x64 binaries only), and
#                                    Debian's libvulkan1 (the Vulkan loader; `apt-get download`).
#   bench/webgpu-gpu-check.sh run [bench flags]
#                                    On the GPU machine, from the repository root with .gpucheck/ beside it: unpacks it
#                                    under /tmp, puts the Vulkan loader in place if ldconfig knows none (as root),
#                                    points Vulkan at NVIDIA's driver manifest when it is not in a standard place, lists
#                                    the adapters Dawn sees (with experimental features unlocked, to show whether
#                                    subgroup matrices are offered), then runs the bench with --adapter gpu. Output
#                                    goes to stdout and, when $OUT is set, to $OUT/webgpu-gpu-check.log.
#
# With this workplace's device tool: run(command: 'bash bench/webgpu-gpu-check.sh run', carry: ['.gpucheck'],
# timeout_s: 540). The bench's own flags pass through (e.g. `run --batch 64 --steps 5`).
set -euo pipefail
cd "$(dirname "$0")/.."
pack_dir=.gpucheck

pack() {
  [ -f core/dist/index.js ] && [ -f plugins/runtime-tfjs/dist/index.js ] || { echo "build first: npx tsc -b" >&2; exit 1; }
  rm -rf "$pack_dir" && mkdir -p "$pack_dir"
  grep -qxF "/$pack_dir/" "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null || echo "/$pack_dir/" >>"$(git rev-parse --git-common-dir)/info/exclude"
  local stage
  stage=$(mktemp -d)
  # The production dependencies of the packages the bench loads, without optional ones (tfjs-node).
  npm ls --omit=dev --omit=optional --all --parseable -w core -w plugins/backbone-vit -w plugins/runtime-onnx -w plugins/runtime-tfjs 2>/dev/null |
    grep '/node_modules/' | sed 's|.*/node_modules/||' | grep -v '^@transformaly/' | grep -v '^typescript$\|^@types/\|^@webgpu/types$' | sort -u |
    while read -r pkg; do mkdir -p "$stage/node_modules/$(dirname "$pkg")" && cp -a "node_modules/$pkg" "$stage/node_modules/$pkg"; done
  # Only what Node loads on Linux x64: the other platforms' binaries and tfjs's browser bundles and sources go.
  find "$stage/node_modules/onnxruntime-node/bin" -mindepth 3 -maxdepth 3 ! -path '*/linux/x64' -exec rm -rf {} +
  find "$stage/node_modules/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  for pkg in "$stage"/node_modules/@tensorflow/*; do
    main=$(node -p "require('$pkg/package.json').main")
    find "$pkg" -type f ! -name package.json ! -path "$pkg/$main" ! -name '*.wasm' -delete
  done
  find "$stage/node_modules" -name '*.map' -delete
  # The workspace packages, as npm links them.
  for ws in core plugins/backbone-vit plugins/runtime-onnx plugins/runtime-tfjs; do
    name=$(node -p "require('./$ws/package.json').name")
    mkdir -p "$stage/$ws" "$stage/node_modules/$(dirname "$name")"
    cp -a "$ws/package.json" "$ws/dist" "$stage/$ws/"
    ln -s "../../$ws" "$stage/node_modules/$name"
  done
  tar -C "$stage" -cf - . | xz -T0 -6 >"$pack_dir/modules.tar.xz"
  rm -rf "$stage"
  xz -T0 -6 -c "$(command -v node)" >"$pack_dir/node.xz"
  (cd "$pack_dir" && apt-get -o APT::Sandbox::User=root download libvulkan1 >/dev/null)
  du -sh "$pack_dir"/*
  echo "carry $pack_dir with the run (device tool: carry: ['$pack_dir'])"
}

run() {
  [ -f "$pack_dir/modules.tar.xz" ] || { echo "no $pack_dir/: run '$0 pack' first, where npm and the build are" >&2; exit 1; }
  local root=/tmp/transformaly-gpucheck
  rm -rf "$root" && mkdir -p "$root/bin"
  xz -dc "$pack_dir/node.xz" >"$root/bin/node" && chmod +x "$root/bin/node"
  xz -dc "$pack_dir/modules.tar.xz" | tar -C "$root" -xf -
  # bench/webgpu.mjs finds the packages at ../<workspace>/dist beside its own folder.
  mkdir -p "$root/bench" && cp bench/webgpu.mjs "$root/bench/"
  if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    for deb in "$pack_dir"/libvulkan1_*.deb; do dpkg -x "$deb" /; done
    ldconfig
  fi
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
      if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; break; fi
    done
  fi
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
  local log=${OUT:-$root}/webgpu-gpu-check.log
  {
    echo "== $(date -u +%FT%TZ) $(uname -m); node $("$root/bin/node" --version); VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "== adapters (Dawn, experimental features unlocked)"
    (cd "$root" && "$root/bin/node" --input-type=module -e "
      import { create } from 'webgpu';
      const gpu = create(['enable-dawn-features=allow_unsafe_apis']);
      for (const powerPreference of ['high-performance', 'low-power']) {
        const a = await gpu.requestAdapter({ powerPreference });
        if (!a) { console.log(powerPreference, 'none'); continue; }
        const { vendor, architecture, device, description, isFallbackAdapter, subgroupMinSize, subgroupMaxSize } = a.info;
        console.log(powerPreference, JSON.stringify({ vendor, architecture, device, description, isFallbackAdapter, subgroupMinSize, subgroupMaxSize,
          subgroupMatrixConfigs: a.info.subgroupMatrixConfigs ?? null, features: [...a.features].sort(),
          maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, maxBufferSize: a.limits.maxBufferSize }));
      }")
    echo "== bench/webgpu.mjs --adapter gpu $*"
    "$root/bin/node" "$root/bench/webgpu.mjs" --adapter gpu --threads "$(nproc)" "$@"
  } 2>&1 | tee "$log"
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 pack | run [bench flags]" >&2; exit 2 ;;
esac
