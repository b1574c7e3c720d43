"""The report's pass diffs match lines by what they compute, so a pass that
removes one node early does not show every renumbered line as changed."""
from nngraph.report.ir_diff import canonical, ir_diff

BEFORE = """func @main(%x: f32[3]) {
  %0 = constant 1.0 : f32[]
  %1 = mul %x, %0 : f32[3]
  %2 = exp %x : f32[3]
  %3 = log %2 : f32[3]
  return %3
}
"""
AFTER = """func @main(%x: f32[3]) {
  %0 = exp %x : f32[3]
  %1 = log %0 : f32[3]
  return %1
}
"""


def test_removed_lines_only_and_renumbered_ones_equal():
    d = ir_diff(BEFORE, AFTER)
    assert [ln for ln in d if ln[0] in "+-"] == ["-  %0 = constant 1.0 : f32[]", "-  %1 = mul %x, %0 : f32[3]"]
    assert "   %0 = exp %x : f32[3]" in d            # shown with its number after the pass


def test_a_changed_operand_changes_its_users_and_no_change_is_no_diff():
    assert ir_diff(BEFORE, BEFORE) == []
    changed = AFTER.replace("exp %x", "sqrt %x")
    d = ir_diff(AFTER, changed)
    assert "-  %0 = exp %x : f32[3]" in d and "+  %0 = sqrt %x : f32[3]" in d
    assert "+  %1 = log %0 : f32[3]" in d            # it reads another value now


def test_identical_definitions_get_distinct_names():
    names = canonical(["  %0 = exp %x : f32[3]", "  %1 = exp %x : f32[3]", "  %2 = add %0, %1 : f32[3]"])
    assert names[0].split(" = ")[0] != names[1].split(" = ")[0]
