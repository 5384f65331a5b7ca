"""``_numba_local.local_exchange`` as it was before it skipped 8-sample words
without a flag (the thirty-third round): the reference its scan is checked
against, bit for bit (``tests/test_local_words.py``)."""

from numba import njit

from napari_catune import _numba_local as nl


@njit(nogil=True)
def local_exchange_ref(y, bvec, g1, g2, alpha, beta, active, flip, x, u, nu, gain, eps_u, eps_nu,
                       max_seg, max_work, n_block=nl._SEG_ROUNDS, n_single=nl._SEG_SINGLE, window=0,
                       thin=0, short=False):
    """The exchange before the word skip: the next flag found sample by sample."""
    n = x.shape[0]
    work = 0
    left = 0
    k = 0
    while k < n:
        if not flip[k]:
            k += 1
            continue
        if work >= max_work:
            # out of budget: the rest of the exchange as a plain block flip
            for j in range(k, n):
                if flip[j]:
                    active[j] = not active[j]
            left += 1
            break
        # the pairs that close a segment are untouched by the exchange, so
        # its edges do not depend on whether its flips are applied yet
        a = nl._left_edge(active, flip, k, n)
        e = nl._right_edge(active, flip, k, n)
        for j in range(k, e):
            if flip[j]:
                active[j] = not active[j]
        settled = False
        lo = a
        for rnd in range(n_block + n_single):
            if e - a > max_seg or work + (e - a) > max_work:
                break
            # with ``window``, a round after the first re-solves only from
            # ``window`` samples before the smallest index the last one
            # changed, with x fixed before that (a block-coordinate step:
            # a guess for the next full step, exact only with window 0)
            wa = a
            if window > 0 and lo - window > a:
                wa = lo - window
            n_bad, grow_left, grow_right, lo = nl.segment_solve(
                y, bvec, g1, g2, alpha, beta, active, wa, e, gain, x, u, nu, eps_u, eps_nu,
                rnd >= n_block, thin, short)
            work += e - wa
            if n_bad == 0:
                settled = True
                break
            if grow_left and wa == a:
                a = nl._left_edge(active, flip, a, n)
                lo = a
            if grow_right:
                e_new = nl._right_edge(active, flip, e + 1, n)
                for j in range(e + 2, e_new):
                    if flip[j]:
                        active[j] = not active[j]
                e = e_new
        if not settled:
            left += 1
        # the next flipped sample lies at or after e (the closing pair is
        # untouched)
        k = e
    return work, left

