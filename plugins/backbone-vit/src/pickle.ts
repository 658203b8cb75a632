// PyTorch pickle checkpoints are never read (unpickling runs code); these are the names they go by, and the
// conversion a user runs once instead, in Python, where they decide whom to trust.

export const PICKLE_EXTENSIONS: ReadonlySet<string> = new Set(['.bin', '.pth', '.pt', '.ckpt', '.pkl']);

/**
 * The Python that turns a pickle checkpoint into safetensors without running code from it: `weights_only=True`
 * (PyTorch >= 1.13) unpickles only tensors and plain containers; only tensors are kept, each copied into its own
 * contiguous storage, because `save_file` refuses non-contiguous tensors and tensors that share memory.
 */
export function conversionSnippet(source: string, target: string): string {
  return (
    '  import torch; from safetensors.torch import save_file\n' +
    `  state = torch.load(${JSON.stringify(source)}, map_location="cpu", weights_only=True)\n` +
    '  state = state.get("model", state.get("state_dict", state))\n' +
    `  save_file({k: v.contiguous().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}, ${JSON.stringify(target)})\n` +
    'If torch.load refuses the file with weights_only=True, it holds Python objects besides tensors, and loading it ' +
    'without that flag runs their code: do so only for a file from a source you trust.'
  );
}
