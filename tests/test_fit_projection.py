"""The variable projection's normal equations and its bounded Levenberg–Marquardt search."""
import math

import numpy as np
import pytest

from ncsynth.analysis.fit_projection import VariableProjection, levenberg_marquardt
from ncsynth.analysis.saxs import _context_for, fit_pattern, gaussian_model, sphere_intensity
from ncsynth.analysis.skewed import skewed_model

Q_NM = np.geomspace(0.1, 5.0, 500)


def pattern(radius=2.0, sigma=0.2, seed=0):
    intensity = sphere_intensity(Q_NM, radius, sigma, 2e-5, 0.05)
    scale = 2e4 / intensity.max()
    counts = np.random.default_rng(seed).poisson(intensity * scale)
    return counts / scale, np.sqrt(np.maximum(counts, 1)) / scale


@pytest.mark.parametrize("model, theta", [
    (gaussian_model, [math.log(2.1), math.log(0.25)]),
    (skewed_model, [math.log(1.9), math.log(0.18), -0.4])])
def test_normal_equations_are_those_of_the_explicit_kaufman_jacobian(model, theta):
    y, s = pattern()
    projection = VariableProjection(model(_context_for(Q_NM).kernel), y, 1.0 / s)
    cost, c, b, residual, jacobian = projection(np.array(theta))
    fast_cost, fast_c, fast_b, gradient, hessian = projection.normal_equations(theta)
    assert fast_cost == pytest.approx(cost, rel=1e-13)
    assert (fast_c, fast_b) == pytest.approx((c, b), rel=1e-12)
    np.testing.assert_allclose(gradient, jacobian.T @ residual, rtol=1e-9)
    np.testing.assert_allclose(hessian, jacobian.T @ jacobian, rtol=1e-12)


def test_search_reaches_the_minimum_of_the_projected_cost_inside_its_bounds():
    y, s = pattern(seed=1)
    projection = VariableProjection(gaussian_model(_context_for(Q_NM).kernel), y, 1.0 / s)
    lower, upper = np.log([0.1, 1e-4]), np.log([60.0, 60.0])
    theta, cost, c, b, converged = levenberg_marquardt(projection, np.log([3.0, 0.6]), lower, upper, 60)
    assert converged
    gradient, hessian = projection.normal_equations(theta)[3:]
    errors = np.sqrt(np.diag(np.linalg.inv(hessian)))
    # the Gauss–Newton step left is negligible against the standard errors
    assert np.all(np.abs(np.linalg.solve(hessian, gradient)) < 1e-3 * errors)
    fit = fit_pattern(Q_NM, y, s)
    assert np.exp(theta) == pytest.approx([fit.radius_nm, fit.sigma_nm], rel=1e-6)


def test_a_parameter_pushed_against_its_bound_is_held_there():
    y, s = pattern(seed=2)
    projection = VariableProjection(gaussian_model(_context_for(Q_NM).kernel), y, 1.0 / s)
    # σ may not exceed 0.1 nm (the truth is 0.2 nm): the search ends on that bound
    lower, upper = np.log([0.1, 1e-4]), np.log([60.0, 0.1])
    theta, _, _, _, converged = levenberg_marquardt(projection, np.log([2.0, 0.05]), lower, upper, 60)
    assert converged and theta[1] == upper[1]
    assert lower[0] < theta[0] < upper[0]
