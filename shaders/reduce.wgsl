// lossc workgroup reductions over lc_red (and lc_cnt), in a fixed order, so that a
// kernel's result is bit-identical run to run. Two levels (8 groups of 8, then the 8
// group results) keep the barriers to four: on software rasterisers such as llvmpipe a
// barrier costs far more than the adds it saves. Call from uniform control flow.

// kind 0: sum, 1: maximum, 2: minimum (NaN-propagating), 3: product.
fn lc_combine(a: f32, b: f32, kind: u32) -> f32 {
    if (kind == 1u) {
        return lc_max(a, b);
    }
    if (kind == 2u) {
        return lc_min(a, b);
    }
    if (kind == 3u) {
        return a * b;
    }
    return a + b;
}

fn lc_tree(lid: u32, kind: u32) -> f32 {
    workgroupBarrier();
    if (lid < 8u) {
        var r = lc_red[lid * 8u];
        for (var i = 1u; i < 8u; i++) {
            r = lc_combine(r, lc_red[lid * 8u + i], kind);
        }
        lc_red[lid * 8u] = r;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var r = lc_red[0];
        for (var i = 1u; i < 8u; i++) {
            r = lc_combine(r, lc_red[i * 8u], kind);
        }
        lc_red[0] = r;
    }
    workgroupBarrier();
    let total = lc_red[0];
    workgroupBarrier();
    return total;
}

// The sum of lc_red and the sum of lc_cnt together; the sum is returned and the count
// left in lc_last_count.
fn lc_tree_sum_count(lid: u32) -> f32 {
    workgroupBarrier();
    if (lid < 8u) {
        var r = lc_red[lid * 8u];
        var c = lc_cnt[lid * 8u];
        for (var i = 1u; i < 8u; i++) {
            r = r + lc_red[lid * 8u + i];
            c = c + lc_cnt[lid * 8u + i];
        }
        lc_red[lid * 8u] = r;
        lc_cnt[lid * 8u] = c;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var r = lc_red[0];
        var c = lc_cnt[0];
        for (var i = 1u; i < 8u; i++) {
            r = r + lc_red[i * 8u];
            c = c + lc_cnt[i * 8u];
        }
        lc_red[0] = r;
        lc_cnt[0] = c;
    }
    workgroupBarrier();
    let total = lc_red[0];
    lc_last_count = lc_cnt[0];
    workgroupBarrier();
    return total;
}
