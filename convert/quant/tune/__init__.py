"""`seachat tune`: spend a bits-per-weight budget where the worst-served language needs it.

1. Group the model's quantizable tensors by kind and depth range (attn_v of the first third
   of the blocks, ffn_down of the last third, the output/tied embedding, ...).
2. Measure: for every group and every candidate type on its ladder, quantize ONLY that group
   (everything else stays at the source precision) and evaluate the probe against the
   source on every language. That gives ΔKLD[group, type, language]: how much each group
   hurts each language when quantized lower. Probes run several at a time against one
   reference pass; results are cached in the measurements JSON, so an interrupted tune
   resumes where it stopped.
3. Choose one type per group minimising the WORST language's predicted KLD (sum of the
   group ΔKLDs, which add up for small independent errors) subject to the total size
   budget: multiplicative weights over languages, each step an exact multiple-choice
   knapsack (dynamic programming over bytes), then a local search on the best iterate.
4. Write the profile TOML (rules by kind and depth fraction, so it applies to models of any
   depth) and the measurements behind it.

Modules: groups (what is measured together), measure (ΔKLD probes, cached), allocate (the
worst-language solver), profile_toml (the profile written), per_model (re-solving an
[allocate] profile for another model), command (the whole `seachat tune` run).
"""
