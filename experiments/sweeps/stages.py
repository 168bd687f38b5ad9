"""A grid in stages: pretraining, then fine-tuning from it; a teacher, then students of it.

```yaml
name: transfer
base: {data: {name: glue, task: sst2}}   # every stage starts from it
seeds: [0, 1, 2]
stages:                                  # run in file order; a cell may start from earlier stages'
  pretrain:
    base: {data: {name: masked_text, source: glue, task: sst2}}
    axes: {model: [{name: transformer}]}
  finetune:
    axes:
      model:
        - {name: transformer}
        - {name: transformer, init_from: {stage: pretrain, part: encoder}}
```

Each stage is a grid of its own (``base``, ``trainer``, ``axes``, ``zip``, ``exclude``, ``include``,
``seeds``) over the grid's base, its configurations named ``<stage>-<config>``; a stage with only
``include`` entries runs just those (not also its bare base). A reference
``{stage: S}`` in ``model.init_from`` or ``distill.teacher`` means the cell of stage ``S`` with the same
seed (or the stage's only cell); ``cell: CONFIG`` picks one of its configurations by its name (without
the stage) or the start of it (``cell: minilm`` for ``minilm-poolingmean``). The reference is
linked here: the parent's spec hash enters the child's identity, and the child ``needs`` the parent,
so the scheduler starts it only once the parent FINISHED and leaves it unrun when the parent FAILED.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from core import tags as tag
from core.errors import SpecError
from experiments.specs import RunRef, RunSpec, SpecSource
from experiments.specs.values import deep_merge, parse_override, set_value

REFERENCES = ("model.init_from", "distill.teacher")


def expand_stages(grid: Any, source: SpecSource, expand: Callable[..., list[Any]]) -> list[Any]:
    """Every stage's cells, in stage order, their references to earlier stages linked."""
    cells: list[Any] = []
    by_stage: dict[str, list[Any]] = {}
    for name, stage in grid.stages.items():
        sub = _stage_grid(grid, name, stage, source)
        # a stage of include entries alone runs those entries, not also its bare base
        product = not stage.include or bool(stage.axes or stage.zip)
        stage_cells = [_named(c, name, grid.name) for c in expand(sub, product=product)]
        stage_cells = [_link(c, name, by_stage, source) for c in stage_cells]
        by_stage[name] = stage_cells
        cells += stage_cells
    return cells


def _stage_grid(grid: Any, name: str, stage: Any, source: SpecSource) -> Any:
    """The stage as a plain grid: the grid's base with the stage's merged in (``--set`` still wins)."""
    base = deep_merge(grid.base, stage.base)
    for _, text in source.overrides:
        key, value = parse_override(text)
        set_value(base, key, value)
    trainer = grid.trainer.model_dump(mode="json", exclude_unset=True)
    trainer |= stage.trainer.model_dump(mode="json", exclude_unset=True)
    raw = {
        "name": grid.name,
        "base": base,
        "trainer": trainer,
        "axes": stage.axes,
        "zip": stage.zip,
        "exclude": stage.exclude,
        "include": stage.include,
        "seeds": stage.seeds or grid.seeds,
    }
    sub = type(grid).model_validate(copy.deepcopy(raw))
    sub._source = source.within("stages", name)
    return sub


def _named(cell: Any, stage: str, grid_name: str) -> Any:
    # a stage without axes has one configuration, which expand names after the grid: name it the stage
    config = stage if cell.config == grid_name else f"{stage}-{cell.config}"
    seed = cell.spec.seed
    return dataclasses.replace(
        cell, run_name=f"{config}-s{seed}", config=config, stage=stage, tags={**cell.tags, tag.STAGE: stage}
    )


def _link(cell: Any, stage: str, earlier: dict[str, list[Any]], source: SpecSource) -> Any:
    """The cell with each ``{stage: ...}`` reference resolved to the parent cell's hash."""
    spec: RunSpec = cell.spec
    needs = []
    init = spec.model.init_from
    if init is not None and init.stage is not None:
        parent = _parent(cell, stage, "model.init_from", init, earlier, source)
        init = init.model_copy(update={"spec_hash": parent.spec.spec_hash})
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"init_from": init})})
        needs.append(parent.spec.spec_hash)
    distill = spec.distill
    if distill is not None and distill.teacher.stage is not None:
        parent = _parent(cell, stage, "distill.teacher", distill.teacher, earlier, source)
        teacher = distill.teacher.model_copy(update={"spec_hash": parent.spec.spec_hash})
        spec = spec.model_copy(update={"distill": distill.model_copy(update={"teacher": teacher})})
        needs.append(parent.spec.spec_hash)
    if not needs:
        return cell
    return dataclasses.replace(cell, spec=spec, needs=tuple(dict.fromkeys(needs)))


def _parent(
    cell: Any, stage: str, where: str, ref: RunRef, earlier: dict[str, list[Any]], source: SpecSource
) -> Any:
    context = f"{source.path}: stage {stage!r}, cell {cell.run_name}: {where}"
    if ref.stage not in earlier:
        order = ", ".join(earlier) or "none before it"
        raise SpecError(
            f"{context} names stage {ref.stage!r}, which is not an earlier stage (stages run in file "
            f"order; earlier here: {order}); name an earlier stage or move the stage up"
        )
    candidates: Sequence[Any] = earlier[ref.stage]
    if ref.cell is not None:
        names = {c.config.removeprefix(f"{ref.stage}-") for c in candidates}
        exact = ref.cell in names
        candidates = [
            c
            for c in candidates
            if (c.config.removeprefix(f"{ref.stage}-") == ref.cell)
            or (not exact and c.config.removeprefix(f"{ref.stage}-").startswith(ref.cell))
        ]
        if not candidates:
            configs = sorted({c.config.removeprefix(f"{ref.stage}-") for c in earlier[ref.stage]})
            raise SpecError(
                f"{context}: stage {ref.stage!r} has no configuration {ref.cell!r}; its configurations: "
                f"{', '.join(configs)}"
            )
    same_seed = [c for c in candidates if c.spec.seed == cell.spec.seed]
    if len(same_seed) == 1:
        return same_seed[0]
    if len(candidates) == 1:
        return candidates[0]
    configs = sorted({c.config.removeprefix(f"{ref.stage}-") for c in candidates})
    raise SpecError(
        f"{context}: {len(same_seed) or len(candidates)} cells of stage {ref.stage!r} could be the parent "
        f"(seed {cell.spec.seed}); pick one with `cell:` (configurations: {', '.join(configs)})"
    )
