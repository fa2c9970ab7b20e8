"""Rule-based graders: math equivalence (math-verify in a killable process pool), multiple choice, code (sandbox)."""
