"""The spec sections of the strategies a grid compares beyond plain training: a run that starts from
another run's weights (``model.init_from``), a student that learns from a teacher's soft targets
(``distill``), and the quantized and reduced-precision variants a finished run is tested in
(``variants``).

A reference to another run (``RunRef``) names a run id, a checkpoint folder or file, or, inside a
grid's ``stages``, a cell of an earlier stage. It is *resolved* before anything runs: ``spec_hash``
is filled with the parent's spec hash (a checkpoint's: the sha256 of its weights), and that hash, not
the way the parent was named, is what enters the child's identity. So a fine-tuning run of a grid and
the same run started by its parent's run id are one run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from experiments.specs.strict import StrictModel

VARIANTS = ("fp32", "int8", "bf16")
Variant = Literal["fp32", "int8", "bf16"]


class RunRef(StrictModel):
    """Another run: ``{run: ID}``, ``{checkpoint: PATH}`` or (in a grid) ``{stage: NAME, cell: CONFIG}``.

    A bare string is a run id. ``cell`` picks a configuration of the stage (its name without the
    seed); without it the stage's cell with the same seed is meant (or its only cell).
    """

    run: str | None = None
    checkpoint: str | None = None
    stage: str | None = None
    cell: str | None = None
    spec_hash: str | None = None  # filled when resolved; the identity of the parent

    @model_validator(mode="before")
    @classmethod
    def _bare_run_id(cls, raw: Any) -> Any:
        return {"run": raw} if isinstance(raw, str) else raw

    @model_validator(mode="after")
    def _one_source(self) -> RunRef:
        given = [k for k in ("run", "checkpoint", "stage") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "name exactly one of run (a run id), checkpoint (a path) or stage (a grid stage), "
                f"got {', '.join(given) or 'none'}"
            )
        if self.cell is not None and self.stage is None:
            raise ValueError("cell picks a configuration of a stage; give stage too, or drop cell")
        return self

    def shown(self) -> str:
        if self.stage is not None:
            return f"stage {self.stage!r}" + (f" cell {self.cell!r}" if self.cell else "")
        return f"run {self.run}" if self.run is not None else f"checkpoint {self.checkpoint}"

    def identity(self) -> dict[str, Any]:
        """What of the reference changes the child: the parent's hash once resolved."""
        if self.spec_hash is not None:
            return {"parent": self.spec_hash}
        return {"unresolved": self.shown()}


class InitFromSpec(RunRef):
    """``model.init_from``: load the parent's weights, all of them or its ``encoder`` (every tensor but
    the task heads: a classifier's ``head``, a masked-LM's ``mlm_head`` and mask vector)."""

    part: Literal["all", "encoder"] = "all"

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "part": self.part}


class DistillSpec(StrictModel):
    """``distill: {teacher: RUN, temperature: T, alpha: a}``: the student's training loss is
    ``a * T^2 * KL(teacher_T || student_T) + (1 - a) * CE(student, labels)``, the teacher's logits on
    the student's training examples computed once and cached."""

    teacher: RunRef
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)

    def identity(self) -> dict[str, Any]:
        return {"teacher": self.teacher.identity(), "temperature": self.temperature, "alpha": self.alpha}
