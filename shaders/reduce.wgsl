// lossc workgroup reductions: tree reductions over lc_red / lc_cnt in a fixed order, so
// that a kernel's result is bit-identical run to run. Call from uniform control flow.

// kind 0: sum, 1: maximum, 2: minimum (NaN-propagating).
fn lc_tree(lid: u32, kind: u32) -> f32 {
    workgroupBarrier();
    for (var s = LC_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let a = lc_red[lid];
            let b = lc_red[lid + s];
            var r = a + b;
            if (kind == 1u) {
                r = lc_max(a, b);
            } else if (kind == 2u) {
                r = lc_min(a, b);
            }
            lc_red[lid] = r;
        }
        workgroupBarrier();
    }
    let total = lc_red[0];
    workgroupBarrier();
    return total;
}

fn lc_tree_count(lid: u32) -> u32 {
    workgroupBarrier();
    for (var s = LC_WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            lc_cnt[lid] = lc_cnt[lid] + lc_cnt[lid + s];
        }
        workgroupBarrier();
    }
    let total = lc_cnt[0];
    workgroupBarrier();
    return total;
}
