"""Variable projection and the bounded Levenberg–Marquardt search of the SAXS fits (§S.2.2).

A pattern's model is I(q) = c·a(q; θ) + b: the concentration c (mol/L) and the background b
(cm⁻¹) enter linearly, so for every θ (e.g. ln R0, ln σ) they are solved exactly by weighted
linear least squares and the search runs over θ only (Golub–Pereyra), with the Kaufman
Jacobian of the projected residual. ``levenberg_marquardt`` works on the normal equations
(gradient Jᵀr and Gauss–Newton matrix JᵀJ, k ≤ 3 parameters) in plain floats: for a
500-point pattern the few 2×2 or 3×3 products and solves cost less as Python arithmetic than
as numpy calls, and every product over the q points is one of three matrix products per
evaluation (``VariableProjection.normal_equations``).
"""
from __future__ import annotations

import math
from functools import cached_property

import numpy as np

__all__ = ["VariableProjection", "levenberg_marquardt"]

#: Stop when every step is below this fraction of the parameter's standard error.
STEP_TOLERANCE = 1e-4


class VariableProjection:
    """Variable projection: for the nonlinear parameters theta, solve the concentration c and the
    background b exactly; the projected cost with its residual and Jacobian (``__call__``) or its
    normal equations (``normal_equations``).

    ``model(theta)`` gives ``(rows, factors)``: ``rows`` (1 + k, n) the model per unit
    concentration (cm⁻¹ per mol/L) and its derivatives with respect to k parameters, ``factors``
    (k,) what those derivatives are multiplied by to be d/dtheta (chain rule, e.g. R for ln R).
    ``y`` the intensities (cm⁻¹), ``inv_sigma`` 1/σ of each (cm).
    """

    def __init__(self, model, y, inv_sigma):
        self.model = model
        self.inv_sigma = inv_sigma
        self.yw = y * inv_sigma
        norm = math.sqrt(inv_sigma @ inv_sigma)
        self.e1 = inv_sigma / norm          # unit vector of the background column
        self.one_norm = norm
        self.p1 = float(self.yw @ self.e1)  # background component of yw
        self._stacks = {}

    @cached_property
    def y_perp(self):
        """yw without its background component."""
        return self.yw - self.p1 * self.e1

    def __call__(self, theta):
        """(cost, c, b, residual, Jacobian (n, k) w.r.t. theta) or cost = inf if degenerate.

        With the weighted rows W = rows/σ and P = W − (W·e1) e1 (P₀ = a⊥, the model column
        without its background part): c = (a⊥·yw)/|a⊥|², b = (p1 − c a·e1)/|1/σ|, residual
        y⊥ − c a⊥, and the Kaufman Jacobian −c·factor_j·(P_j − (P_j·a⊥)/|a⊥|² a⊥).
        """
        model, factors = self.model(theta)
        weighted = model * self.inv_sigma
        along = weighted @ self.e1
        perp = weighted - along[:, None] * self.e1
        gram = perp @ perp[0]  # |a⊥|², P_j·a⊥
        if not gram[0] > 0:
            return math.inf, math.nan, math.nan, None, None
        c = float(perp[0] @ self.yw) / gram[0]
        b = (self.p1 - c * along[0]) / self.one_norm
        residual = self.y_perp - c * perp[0]
        jac = perp[1:] - (gram[1:] / gram[0])[:, None] * perp[0]
        jac *= (-c * np.asarray(factors))[:, None]
        return float(residual @ residual), c, b, residual, jac.T

    def _stack(self, k):
        """(3 + k, n) rows yw, e1 and (filled per evaluation) the 1 + k weighted model rows."""
        stack = self._stacks.get(k)
        if stack is None:
            stack = self._stacks[k] = np.empty((k + 3, self.yw.size))
            stack[0], stack[1] = self.yw, self.e1
        return stack

    def normal_equations(self, theta):
        """(cost, c, b, gradient Jᵀr (k,), Gauss–Newton matrix JᵀJ (k × k)) as floats and lists,
        with J the Kaufman Jacobian of ``__call__``; cost = inf (and None) if degenerate.

        The products of the weighted rows W with yw, e1 and W₀ give c and b, and the Kaufman
        rows as combinations J_j ∝ W_j − α_j e1 − β_j W₀ (β_j = P_j·a⊥/|a⊥|², α_j = W_j·e1 −
        β_j W₀·e1); those rows and the residual r = yw − (p1 − c W₀·e1) e1 − c W₀ are formed
        over the points (one product), and their Gram matrix holds χ² = |r|², Jᵀr and JᵀJ.
        (JᵀJ from the Gram matrix of W instead, a Schur complement, lost two digits to the
        correlation of R and c: 5e-14 against 1e-15 relative.)
        """
        model, factors = self.model(theta)
        k = len(factors)
        stack = self._stack(k)
        weighted = stack[2:]
        np.multiply(model, self.inv_sigma, out=weighted)
        products = (weighted @ stack[:3].T).tolist()  # row i: W_i·yw, W_i·e1, W_i·W₀
        along = [row[1] for row in products]
        a0 = along[0]
        g00 = products[0][2] - a0 * a0  # |a⊥|²
        if not g00 > 0:
            return math.inf, math.nan, math.nan, None, None
        c = (products[0][0] - a0 * self.p1) / g00
        background_w = self.p1 - c * a0
        combinations = np.zeros((k + 1, k + 3))
        combinations[0, :3] = 1.0, -background_w, -c
        for j in range(1, k + 1):
            beta = (products[j][2] - along[j] * a0) / g00
            combinations[j, 1:3] = beta * a0 - along[j], -beta
            combinations[j, 2 + j] = 1.0
        rows = combinations @ stack  # r, then the Kaufman rows J_j / (−c f_j)
        gram = (rows @ rows.T).tolist()
        scaled = [-c * f for f in factors]
        hessian = [[scaled[i] * scaled[j] * gram[i + 1][j + 1] for j in range(k)] for i in range(k)]
        return (gram[0][0], c, background_w / self.one_norm,
                [scaled[j] * gram[0][j + 1] for j in range(k)], hessian)


def _solve(matrix, vector):
    """(x, diagonal of matrix⁻¹) with matrix·x = vector, for a small matrix given as a list of
    rows (plain arithmetic up to 2 × 2); None if it is singular."""
    if len(vector) == 2:
        (a, b), (c, d) = matrix
        det = a * d - b * c
        if det == 0.0:
            return None
        v0, v1 = vector
        return [(d * v0 - b * v1) / det, (a * v1 - c * v0) / det], [d / det, a / det]
    if len(vector) == 1:
        a = matrix[0][0]
        return None if a == 0.0 else ([vector[0] / a], [1.0 / a])
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return None
    return (inverse @ vector).tolist(), inverse.diagonal().tolist()


def levenberg_marquardt(projection, theta, lower, upper, max_iterations):
    """Minimise the projected cost of ``projection`` (a ``VariableProjection``) over theta within
    [lower, upper]; returns (theta array, cost, c, b, converged).

    Bounds: steps are clipped to them, and a parameter at a bound that the gradient pushes
    outwards is held there while the others are searched (active set). Converged: a
    Gauss–Newton step of the free parameters below STEP_TOLERANCE of their standard errors, no
    downhill step left, or a relative cost change below 1e-13.
    """
    theta, lower, upper = ([float(v) for v in values] for values in (theta, lower, upper))
    cost, c, b, gradient, hessian = projection.normal_equations(theta)
    if not math.isfinite(cost):
        return np.array(theta), cost, c, b, False
    damping = 1e-3
    k = len(theta)
    for _ in range(max_iterations):
        free = [i for i in range(k) if not ((theta[i] <= lower[i] and gradient[i] > 0)
                                            or (theta[i] >= upper[i] and gradient[i] < 0))]
        if not free:
            return np.array(theta), cost, c, b, True  # held at its bounds
        if len(free) < k:
            gradient = [gradient[i] for i in free]
            hessian = [[hessian[i][j] for j in free] for i in free]
        solved = _solve(hessian, gradient)
        if solved is None:
            tolerance = [math.inf] * len(free)
        else:
            tolerance = [STEP_TOLERANCE * math.sqrt(abs(v)) for v in solved[1]]
            if all(abs(x) <= t for x, t in zip(solved[0], tolerance)):
                return np.array(theta), cost, c, b, True  # the Gauss–Newton step is negligible
        minus_gradient = [-g for g in gradient]
        while True:
            damped = [row[:] for row in hessian]
            for i, row in enumerate(damped):
                row[i] += damping * row[i]
            solved = _solve(damped, minus_gradient)
            step = [0.0] * k
            if solved is not None:
                for i, s in zip(free, solved[0]):
                    step[i] = s
            trial = [min(max(t + s, lo), hi) for t, s, lo, hi in zip(theta, step, lower, upper)]
            trial_state = projection.normal_equations(trial)
            if trial_state[0] <= cost:
                break
            damping *= 10.0
            if damping > 1e12:
                return np.array(theta), cost, c, b, True  # no downhill step left: at a minimum
        previous_cost, previous = cost, theta
        theta = trial
        cost, c, b, gradient, hessian = trial_state
        damping = max(damping / 10.0, 1e-12)
        if all(abs(theta[i] - previous[i]) <= t for i, t in zip(free, tolerance)) \
                or previous_cost - cost <= 1e-13 * previous_cost:
            return np.array(theta), cost, c, b, True
    return np.array(theta), cost, c, b, False
