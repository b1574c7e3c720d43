"""codegen/llvm/target_spec.PIPELINE: the optimisation pipeline target.optimize runs
is the one PIPELINE names, and PIPELINE is part of target_id, so object code made under
another pipeline is not read back from the disk cache."""
import pytest

from codegen.llvm import target, target_spec

# a float loop the loop vectoriser turns into vector code (the generated IR is scalar)
LOOP = """
define void @scale(float* noalias %x, i64 %n) {
entry:
  br label %head
head:
  %i = phi i64 [0, %entry], [%next, %body]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %done
body:
  %p = getelementptr inbounds float, float* %x, i64 %i
  %v = load float, float* %p
  %w = fmul float %v, 2.0
  store float %w, float* %p
  %next = add nsw nuw i64 %i, 1
  br label %head
done:
  ret void
}
"""


def _with(pipeline, **changes):
    return tuple((name, changes.get(name, value)) for name, value in pipeline)


@pytest.mark.parametrize("name, value", [("speed_level", 2), ("loop_vectorization", False),
                                         ("slp_vectorization", False), ("loop_unrolling", True),
                                         ("codegen_level", 2)])
def test_a_pipeline_change_changes_the_target_id(monkeypatch, name, value):
    before = target_spec.target_id()
    monkeypatch.setattr(target_spec, "PIPELINE", _with(target_spec.PIPELINE, **{name: value}))
    assert target_spec.target_id() != before


def test_the_pipeline_run_is_the_one_pipeline_names(monkeypatch):
    assert dict(target_spec.PIPELINE)["loop_vectorization"] is True
    assert "x float>" in str(target.optimize(LOOP))
    monkeypatch.setattr(target, "PIPELINE", _with(target_spec.PIPELINE, loop_vectorization=False))
    assert "x float>" not in str(target.optimize(LOOP))


def test_the_tuning_options_are_pipelines():
    pto = target.pipeline_tuning_options()
    settings = dict(target_spec.PIPELINE)
    assert (pto.speed_level, pto.loop_vectorization, pto.slp_vectorization, pto.loop_unrolling) == \
        (settings["speed_level"], settings["loop_vectorization"], settings["slp_vectorization"],
         settings["loop_unrolling"])
