"""Flow-reactor chemistry (seed 002): plug model, its regimes, and the outlet world model."""
import math

import numpy as np
import pytest
from scipy.stats import gamma

from ncsynth.analysis.optical import MSC_PEAKS_NM, cdse_diameter_nm, cdse_units, exciton_wavelength_nm
from ncsynth.analysis.scattering import distribution_intensity, sphere_intensity
from ncsynth.simulators.clock import WorldClock
from ncsynth.simulators.flow_chemistry import (
    FAMILIES, Arrhenius, FlowComposition, FlowKineticParameters, simulate_plug)
from ncsynth.simulators.flow_heating import HEATING_STEP_C, oven_entry_segments
from ncsynth.simulators.flow_outlet import FlowReactorModel, mixture_distribution
from ncsynth.simulators.flow_figures import (FIG2_SHOULDER_RATIO, STATEMENTS,
                                             flow_figures)
from ncsynth.simulators.world import World

PRECURSOR = 0.01
DEFAULT_REACTOR = FlowReactorModel(lambda: 1.0, lambda: 280.0, lambda: 280.0)


def plug(nucleation_c, growth_c, reaction_time_s, **options):
    """A plug after ``reaction_time_s`` in the default reactor (chamber share of the volume)."""
    flow = (DEFAULT_REACTOR.chamber_volume_ml + DEFAULT_REACTOR.oven_volume_ml) / reaction_time_s * 60
    chamber, oven = DEFAULT_REACTOR.residence_times_s(flow)
    return simulate_plug(chamber, oven, nucleation_c, growth_c, PRECURSOR, **options)


def units_per_particle(label):
    """CdSe units of a family from the seed's sizing route (Fig. 4): Yu diameter, bulk density."""
    return float(cdse_units(cdse_diameter_nm(MSC_PEAKS_NM[label])))


def share(composition, label):
    """Fraction of the fed Cd in ``label`` (a family, "NC" or "monomer")."""
    if label == "NC":
        return composition.nc_units_molar / PRECURSOR
    if label == "monomer":
        return composition.monomer_molar / PRECURSOR
    return composition.families[label] * units_per_particle(label) / PRECURSOR


def msc_share(composition):
    return sum(share(composition, label) for label in FAMILIES)


# ------------------------------------------------------------------ mass balance
@pytest.mark.parametrize("nucleation_c, growth_c, time_s", [
    (230, 230, 1.5), (280, 280, 14.0), (350, 350, 14.0), (350, 260, 4.5), (190, 300, 7.0)])
def test_plug_conserves_cadmium(nucleation_c, growth_c, time_s):
    composition = plug(nucleation_c, growth_c, time_s, series_points=30)
    total = share(composition, "monomer") + msc_share(composition) + share(composition, "NC")
    assert total == pytest.approx(1.0, abs=1e-6)
    series = composition.series
    along = series["monomer_molar"] + series["nc_units_molar"] + sum(
        series[label] * units_per_particle(label) for label in FAMILIES)
    assert np.max(np.abs(along / PRECURSOR - 1)) < 1e-6
    assert series["time_s"][0] == 0 and series["time_s"][-1] == pytest.approx(time_s)
    assert series["monomer_molar"][0] == pytest.approx(PRECURSOR, rel=1e-9)
    assert series["MSC-437"][-1] == pytest.approx(composition.families["MSC-437"], rel=1e-6)


def test_no_precursor_gives_an_empty_plug():
    composition = simulate_plug(0.5, 5.0, 300, 300, precursor_molar=0.0)
    assert composition.cadmium_molar == 0 and math.isnan(composition.nc_diameter_nm)


# ------------------------------------------------------------------ seed regimes
def test_mild_temperature_short_time_cdse_437_dominates():
    """Seed §SAXS, 1.5 s at 200–230 °C: the 437 family (r = 0.94 nm); monomer-rich at mild T."""
    composition = plug(230, 230, 1.5)
    shares = {label: share(composition, label) for label in (*FAMILIES, "NC")}
    assert max(shares, key=shares.get) == "MSC-437"
    assert share(composition, "monomer") > 0.9
    assert composition.nuclei_molar == composition.families["MSC-350"]


def test_mild_temperature_gives_ncs_only_at_long_times():
    """T ≤ 260 °C (Fig. 1, 14 s): regular NCs rather than MSCs; not yet at 1.5 s."""
    early, late = plug(240, 240, 1.5), plug(240, 240, 14.0)
    assert share(early, "NC") < msc_share(early)
    assert share(late, "NC") > 2 * msc_share(late) and share(late, "NC") > 0.2


def test_window_cdse_437_coexists_with_growing_ncs():
    """260–300 °C: CdSe-437 with NCs at 4.5 s and 14 s, NC exciton 490 → 527 nm (seed, 280 °C):
    each holds a quarter of the Cd or more (CdSe-437 31 / 27 %, NCs 26 / 57 %)."""
    at_4_5, at_14 = plug(280, 280, 4.5), plug(280, 280, 14.0)
    for composition in (at_4_5, at_14):
        assert share(composition, "MSC-437") > 0.25 and share(composition, "NC") > 0.25
    first, second = (float(exciton_wavelength_nm(c.nc_diameter_nm)) for c in (at_4_5, at_14))
    assert 490 <= first < second <= 550 and second - first > 15


def test_cdse_437_at_14_s_peaks_inside_the_window():
    window = share(plug(280, 280, 14.0), "MSC-437")
    assert window > 2 * share(plug(240, 240, 14.0), "MSC-437")
    assert window > 10 * share(plug(350, 350, 14.0), "MSC-437")


def test_high_temperature_depletes_monomer_then_dissolves_clusters():
    """> 300 °C: high nucleation, monomer low, MSCs at 1.5–4.5 s dissolve into NCs by 14 s."""
    hot = {t: plug(350, 350, t) for t in (1.5, 4.5, 14.0)}
    assert share(hot[1.5], "monomer") < 0.03 and share(hot[4.5], "monomer") < 0.03
    assert share(plug(240, 240, 4.5), "monomer") > 0.8
    # "the concentration of MSCs formed is high and the monomer concentration is low"
    assert msc_share(hot[4.5]) > 10 * share(hot[4.5], "monomer")
    assert sum(share(hot[1.5], label) > 0.01 for label in FAMILIES) >= 2
    assert msc_share(hot[14.0]) < 0.03 and share(hot[14.0], "NC") > 0.95
    kept = plug(350, 350, 14.0, k_d=Arrhenius(0.0, 0.0))
    assert msc_share(kept) > 0.2  # without dissolution the clusters would stay


def test_high_temperature_takes_the_382_route():
    """Rate laws: CdSe-382 from nuclei above 300 °C, CdSe-403 below.

    CdSe-403 is still there at 350 °C (Fig. 4 isolates it from the 350 °C, 4.5 s mixture;
    here the dissolving larger clusters refill it), so the hot route shows as more CdSe-382
    than CdSe-403, not as its absence."""
    hot, mild = plug(350, 350, 1.5), plug(280, 280, 1.5)
    assert hot.families["MSC-382"] > 2 * hot.families["MSC-403"]
    assert mild.families["MSC-403"] > 5 * mild.families["MSC-382"]


def test_437_to_465_runs_below_and_above_the_window_not_inside():
    """The seed lists r(465) for T <= 260 °C and > 300 °C, not for the 260-300 °C window."""
    k = {t: FlowKineticParameters().constants(t) for t in (240.0, 280.0, 350.0)}
    step = {t: c["k_465"] + c["k_465_hot"] for t, c in k.items()}
    assert step[280.0] < 0.2 * step[240.0] and step[280.0] < 0.01 * step[350.0]
    assert k[350.0]["k_465_hot"] > 10 * k[350.0]["k_465"]


def test_hot_route_is_off_by_default_and_opens_between_300_and_310_c():
    """The seed's high-temperature r(NCs) = k(NCs)[Nucl.][M] as a switched route: nothing by
    default; once given a rate it is shut at 300 °C and open at 310 °C."""
    default = FlowKineticParameters()
    for t in (280.0, 310.0, 350.0):
        assert default.constants(t)["k_nc_nuclei"] == default.k_nc_nuclei.at(t, 280.0)
    hot = FlowKineticParameters(k_nc_nuclei_hot=Arrhenius(3e4, 0.0))
    assert hot.hot_route_opening(300.0) < 0.01 and hot.hot_route_opening(310.0) > 0.95
    assert hot.hot_route_opening(hot.hot_route_half_c) == pytest.approx(0.5)
    assert hot.constants(350.0)["k_nc_nuclei"] == pytest.approx(3e4 + hot.k_nc_nuclei.at(350.0, 280.0))


def test_hot_route_ends_the_window_at_300_c_but_empties_the_350_c_clusters():
    """Measured on the mechanism (why it is off by default): with the route at 3e4 L/mol/s the
    two Fig. 1 rows hold (CdSe-437 below the diagonal <= 5 %, the window >= 10 %), but at
    350 °C the nuclei become NCs, not clusters: Fig. 4's families and Fig. S2's MSCs are lost."""
    on = flow_figures(FlowKineticParameters(k_nc_nuclei_hot=Arrhenius(3e4, 0.0)))
    assert on["cdse437_14s_below_diagonal_max"] <= 0.05
    assert on["cdse437_14s_window_min"] >= 0.10
    assert on["families_at_350_4p5"] < 5 and on["msc_4p5s_min"] < 0.05


def test_hot_lineage_starts_only_where_the_switch_is_open():
    """Nuclei formed above the switch (half open at 306 °C) start the hot lineage: none in the
    window's plugs, all of a 350 °C plug's clusters; its state round-trips."""
    window, hot = plug(300, 300, 14.0), plug(350, 350, 4.5)
    assert sum(window.hot_families.values()) < 1e-3 * sum(window.families.values())
    for label in FAMILIES:
        assert hot.hot_families[label] == pytest.approx(hot.families[label], rel=1e-3)
    again = FlowComposition.from_state(hot.state(), hot.nc_relative_sigma)
    assert again.families == pytest.approx(hot.families) and again.hot_families == pytest.approx(hot.hot_families)


def test_hot_lineage_clears_cdse_437_below_the_diagonal_and_leaves_the_window():
    """Fig. 1: no CdSe-437 at 14 s after a 310-350 °C chamber, whatever the oven (270-300 °C).
    The hot lineage's CdSe-437 grows on to CdSe-465 and dissolves in the oven, so 330/280 °C
    falls from 34 % (without it) to below 5 %; the window's plugs change by < 1 % (the switch
    is 0.15 % open at 300 °C)."""
    below = {flag: share(plug(330, 280, 14.0, hot_lineage=flag), "MSC-437") for flag in (True, False)}
    assert below[True] <= 0.05 and below[False] > 0.25
    for t in (270, 300):
        assert plug(t, t, 14.0).state()[:8] == pytest.approx(plug(t, t, 14.0, hot_lineage=False).state()[:8],
                                                             rel=1e-2, abs=1e-9)
    assert share(plug(310, 300, 14.0), "MSC-437") <= 0.05 < share(plug(300, 300, 14.0), "MSC-437")


def test_clusters_dissolve_only_under_monomer_depletion():
    """At 280 °C, 4.5 s the monomer stays above the solubility: nothing dissolves (the same
    plug as without dissolution); at 350 °C it is used up, and by 4.5 s the clusters have
    lost more than half of their Cd."""
    no_dissolution = Arrhenius(0.0, 0.0)
    assert share(plug(280, 280, 4.5), "monomer") > 0.1
    assert (plug(280, 280, 4.5).state().tolist()
            == plug(280, 280, 4.5, k_d=no_dissolution).state().tolist())
    assert msc_share(plug(350, 350, 4.5)) < 0.5 * msc_share(plug(350, 350, 4.5, k_d=no_dissolution))


@pytest.mark.parametrize("oven_s, nucleation_c, growth_c", [(1.36, 280, 230), (12.7, 300, 330), (0.05, 350, 270)])
def test_oven_entry_follows_the_plugs_exponential_relaxation(oven_s, nucleation_c, growth_c):
    """Segments fill the oven residence, each spans <= HEATING_STEP_C of T(t) = T_g + ΔT·e^(−t/τ)
    and their time-weighted temperature is the exact integral of T(t)."""
    tau = 0.4
    segments = oven_entry_segments(oven_s, nucleation_c, growth_c, tau)
    durations, temperatures = np.array(segments).T
    assert durations.sum() == pytest.approx(oven_s, rel=1e-12) and np.all(durations > 0)
    change = nucleation_c - growth_c
    exact = growth_c * oven_s + change * tau * (1 - math.exp(-oven_s / tau))
    assert np.dot(durations, temperatures) == pytest.approx(exact, rel=1e-9)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    spans = np.abs(change) * (np.exp(-starts / tau) - np.exp(-(starts + durations) / tau))
    assert np.all(spans <= HEATING_STEP_C + 1e-9)
    assert np.all(np.diff(temperatures) * np.sign(-change) > 0)  # monotone towards T_g
    assert oven_entry_segments(oven_s, growth_c, growth_c, tau) == [(oven_s, growth_c)]


def test_nucleation_temperature_matters_at_1_5_s_through_the_oven_entry():
    """Fig. 2 (1.5 s, oven 230 °C): the SAXS-visible Cd (CdSe-403/437/465 and NCs) grows with the
    nucleation temperature far more when the plug relaxes into the oven than with a step, and
    plugs with T_nuc = T_growth do not feel the relaxation at all."""
    def visible(composition):
        return share(composition, "NC") + sum(share(composition, f) for f in FAMILIES[2:])

    def rise(**options):
        return visible(plug(280, 230, 1.5, **options)) / visible(plug(190, 230, 1.5, **options))

    assert rise() > 2 * rise(oven_heat_time_s=0.0) and rise(oven_heat_time_s=0.0) > 1
    assert plug(280, 280, 14.0).state().tolist() == plug(280, 280, 14.0, oven_heat_time_s=0.0).state().tolist()


def test_fig2_cdse_465_shoulder_appears_between_220_and_240_c():
    """Fig. 2 (1.5 s, oven 230 °C): the r = 1.02 nm shoulder (CdSe-465) "formed at 230 °C ...
    fully pronounced at 240 °C": below half of CdSe-437's Cd up to T_nuc 220 °C, at least half
    at 240 °C, rising with T_nuc (half of fig2_steps_1p5s)."""
    ratio = {t: share(c, "MSC-465") / share(c, "MSC-437")
             for t, c in ((t, plug(t, 230, 1.5)) for t in (200, 210, 220, 230, 240))}
    assert all(ratio[t] < FIG2_SHOULDER_RATIO for t in (200, 210, 220)), ratio
    assert ratio[240] >= FIG2_SHOULDER_RATIO, ratio
    assert np.all(np.diff(list(ratio.values())) > 0), ratio


def test_fig2_first_quantized_step_cdse_403_at_190_c_then_cdse_437():
    """Fig. 2 (1.5 s, oven 230 °C): "a growth step of MSCs ... from r = 0.87 nm to r = 0.94 nm
    upon increasing the nucleation temperature from 190 °C to 200 °C": CdSe-403 the largest
    SAXS-visible family at T_nuc 190 °C, CdSe-437 from 200 °C, CdSe-403's lead falling with
    T_nuc. The chamber's temperature reaches the oven through the plug's relaxation into it
    (τ): with a step (τ = 0) CdSe-437 leads at 190 °C too."""
    def lead(t_nuc, **options):
        composition = plug(t_nuc, 230, 1.5, **options)
        return share(composition, "MSC-403") / share(composition, "MSC-437")

    leads = [lead(t) for t in (190, 200, 210, 220)]
    assert leads[0] > 1 > leads[1] and np.all(np.diff(leads) < 0), leads
    assert lead(190, oven_heat_time_s=0.0) < 1


def test_arrhenius_constants():
    rate = Arrhenius(200.0, 150.0)
    assert rate.at(280.0, 280.0) == pytest.approx(200.0)
    kelvin = 330.0 + 273.15
    assert rate.at(330.0, 280.0) == pytest.approx(
        rate.prefactor(280.0) * math.exp(-150e3 / (8.314462618 * kelvin)), rel=1e-12)
    assert Arrhenius(5.0, -80.0).at(240.0, 280.0) > 5.0  # negative E_a: faster when colder


@pytest.mark.parametrize("call", [
    lambda: simulate_plug(-1.0, 1.0, 280, 280),
    lambda: simulate_plug(1.0, math.nan, 280, 280),
    lambda: simulate_plug(1.0, 1.0, -300, 280),
    lambda: simulate_plug(1.0, 1.0, 280, 280, precursor_molar=-0.1),
    lambda: simulate_plug(1.0, 1.0, 280, 280, series_points=-2),
    lambda: FlowKineticParameters(dissolution_factors=(1.0, 1.0)),
    lambda: FlowKineticParameters(nc_birth_units=60.0),
    lambda: FlowKineticParameters(dissolution_limit_per_s=0.0),
    lambda: FlowKineticParameters(monomer_solubility_molar=0.0),
    lambda: FlowKineticParameters(oven_heat_time_s=-0.1),
    lambda: Arrhenius(-1.0, 10.0),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


# ------------------------------------------------------------------ outlet world model
class Inputs:
    """Pump and controllers as plain settable values, read through callables."""

    def __init__(self, flow=2.4, nucleation=280.0, growth=280.0):
        self.flow, self.nucleation, self.growth = flow, nucleation, growth

    def model(self, **options):
        return FlowReactorModel(lambda: self.flow, lambda: self.nucleation, lambda: self.growth,
                                **options)


def run(model, seconds, dt_s=0.05):
    for _ in range(int(round(seconds / dt_s))):
        model.step(dt_s, None)


def test_washout_follows_tanks_in_series_and_reaches_the_plug():
    inputs = Inputs(flow=7.3)
    model = inputs.model()
    chamber, oven = 0.05 / 7.3 * 60, 0.5 / 7.3 * 60
    target = simulate_plug(chamber, oven, 280.0, 280.0, PRECURSOR)
    volume_time_s = model.total_volume_ml / 7.3 * 60
    for stop in (0.5, 1.0, 2.0, 4.0):  # residence volumes flushed
        run(model, stop * volume_time_s - model.time_s)
        erlang = gamma.cdf(model.time_s, a=10, scale=volume_time_s / 10)
        fraction = model.outlet().families["MSC-437"] / target.families["MSC-437"]
        assert fraction == pytest.approx(erlang, rel=1e-4)
    outlet = model.outlet()
    assert outlet.families["MSC-437"] == pytest.approx(target.families["MSC-437"], rel=1e-2)
    assert outlet.nc_molar == pytest.approx(target.nc_molar, rel=1e-2)
    assert outlet.nc_diameter_nm == pytest.approx(target.nc_diameter_nm, rel=1e-2)
    assert outlet.cadmium_molar == pytest.approx(PRECURSOR, rel=1e-2)


def test_outlet_does_not_depend_on_the_step_size():
    fine, coarse = Inputs().model(), Inputs().model()
    run(fine, 12.0, dt_s=0.05)
    run(coarse, 12.0, dt_s=3.0)
    assert np.allclose(fine.outlet().state(), coarse.outlet().state(), rtol=1e-9, atol=0)


def test_flow_change_moves_the_outlet_to_the_new_residence_time():
    inputs = Inputs(flow=2.4)  # ~14 s of reaction
    model = inputs.model()
    run(model, 100.0, dt_s=0.5)
    slow = model.steady_state(2.4, 280.0, 280.0)
    assert model.outlet().nc_diameter_nm == pytest.approx(slow.nc_diameter_nm, rel=1e-3)
    inputs.flow = 22.0  # ~1.5 s
    fast = simulate_plug(0.05 / 22 * 60, 0.5 / 22 * 60, 280.0, 280.0, PRECURSOR)
    run(model, 0.2)
    assert model.outlet().nc_units_molar > 0.9 * slow.nc_units_molar  # not switched yet
    run(model, 6 * model.total_volume_ml / 22 * 60)
    assert model.outlet().nc_units_molar == pytest.approx(fast.nc_units_molar, rel=1e-2)
    assert model.outlet().families["MSC-437"] == pytest.approx(fast.families["MSC-437"], rel=1e-2)
    snapshot = model.snapshot()
    assert snapshot["residence_chamber_s"] == pytest.approx(0.05 / 22 * 60)
    assert snapshot["residence_oven_s"] == pytest.approx(0.5 / 22 * 60)


def test_runs_inside_the_simulated_world():
    inputs = Inputs(flow=7.3)
    clock = WorldClock(speed=None)
    try:
        world = World(clock, dt_s=0.05)
        model = world.add("flow_reactor", inputs.model())
        clock.advance(8.0)
        world.advance()
    finally:
        clock.close()
    alone = inputs.model()
    run(alone, 8.0)
    assert model.time_s == pytest.approx(8.0, abs=1e-5)  # world time is epoch seconds: ~1e-7 s grain
    assert np.allclose(model.outlet().state(), alone.outlet().state(), rtol=1e-5, atol=0)
    assert world.flow_reactor is model


def test_zero_flow_holds_the_outlet():
    inputs = Inputs()
    model = inputs.model()
    run(model, 20.0, dt_s=0.5)
    held = model.outlet().state()
    inputs.flow, inputs.nucleation = 0.0, 350.0
    run(model, 100.0, dt_s=0.5)
    assert np.array_equal(model.outlet().state(), held)


def test_temperatures_and_precursor_are_read_while_running():
    inputs = Inputs(flow=7.3, nucleation=280.0, growth=280.0)
    model = inputs.model()
    run(model, 40.0, dt_s=0.5)
    inputs.nucleation = inputs.growth = 350.0
    run(model, 40.0, dt_s=0.5)
    hot = simulate_plug(0.05 / 7.3 * 60, 0.5 / 7.3 * 60, 350.0, 350.0, PRECURSOR)
    assert model.outlet().nc_diameter_nm == pytest.approx(hot.nc_diameter_nm, rel=1e-2)
    model.set_precursor(0.0)
    run(model, 40.0, dt_s=0.5)
    assert model.outlet().cadmium_molar < 1e-4 * PRECURSOR
    assert model.snapshot()["precursor_molar"] == 0.0


def test_steady_states_are_cached_on_rounded_conditions():
    model = Inputs().model()
    first = model.steady_state(2.4, 280.0, 280.0)
    jittered = model.steady_state(2.40001, 280.02, 279.98)
    assert jittered.state().tolist() == first.state().tolist()
    assert model.steady_state(2.4, 281.0, 280.0).families["MSC-437"] != first.families["MSC-437"]


@pytest.mark.parametrize("flow, error", [(-1.0, ValueError), (math.nan, ValueError)])
def test_bad_flow_raises_on_step(flow, error):
    model = Inputs(flow=flow).model()
    with pytest.raises(error):
        model.step(0.1, None)


def test_constructor_checks_its_inputs():
    with pytest.raises(TypeError):
        FlowReactorModel(2.4, lambda: 280.0, lambda: 280.0)
    with pytest.raises(ValueError):
        Inputs().model(oven_volume_ml=-1.0)
    with pytest.raises(ValueError):
        Inputs().model(tanks=0)


# ------------------------------------------------------------------ SAXS distribution
def test_mixture_distribution_matches_separate_populations():
    composition = plug(350, 350, 1.5)
    radius, number = mixture_distribution(composition)
    assert number.sum() == pytest.approx(sum(composition.families.values()) + composition.nc_molar)
    q = np.geomspace(0.2, 5.0, 60)
    mixture = distribution_intensity(q, radius, number)
    # each population a Gaussian in radius whose mean volume is the chemistry's (S2.3 moments:
    # <R³> = R0³(1 + 3 s²) for a relative width s)
    nc_radius = composition.nc_diameter_nm / 2 / np.cbrt(1 + 3 * 0.08**2)
    separate = sphere_intensity(q, nc_radius, 0.08 * nc_radius, composition.nc_molar)
    for label, concentration in composition.families.items():
        if concentration > 0:
            r = float(cdse_diameter_nm(MSC_PEAKS_NM[label])) / 2 / np.cbrt(1 + 3 * 0.02**2)
            separate = separate + sphere_intensity(q, r, 0.02 * r, concentration)
    assert np.max(np.abs(mixture / separate - 1)) < 0.01


@pytest.mark.parametrize("conditions", [(260, 220, 14.0), (290, 260, 14.0), (350, 350, 1.5)])
def test_the_saxs_particles_hold_the_cdse_the_chemistry_holds(conditions):
    """The NCs of the distribution SAXS scatters from hold, in volume, the CdSe units the
    chemistry says they hold (units x molar volume): the flow dry run's McSAS volume fractions
    were 1.7-2.0 % above the outlet's at every grid point, the (1 + 3σ²/R²) of a Gaussian
    centred on the radius of the mean volume."""
    composition = plug(*conditions)
    radius, number = mixture_distribution(composition)
    nc = slice(-41, None)  # the NC cells come last
    saxs_units_molar = float(np.sum(number[nc] * cdse_units(2.0 * radius[nc])))
    assert composition.nc_units_molar > 0
    assert saxs_units_molar == pytest.approx(composition.nc_units_molar, rel=1e-9)
    assert float(np.sum(number[nc])) == pytest.approx(composition.nc_molar)


def test_mixture_distribution_without_ncs_has_fixed_length():
    empty = FlowComposition(0.01, {label: 0.0 for label in FAMILIES}, 0.0, 0.0)
    radius, number = mixture_distribution(empty)
    full_radius, _ = mixture_distribution(plug(280, 280, 4.5))
    assert radius.shape == full_radius.shape and np.all(radius > 0) and number.sum() == 0


def test_a_cold_reactor_is_quenched_and_answers_at_once():
    import time as _time

    from ncsynth.simulators.flow_chemistry import QUENCH_TEMPERATURE_C, simulate_plug

    t = _time.perf_counter()
    cold = simulate_plug(1.5, 14.0, 28.0, 25.0, precursor_molar=0.01)
    assert _time.perf_counter() - t < 20.0      # a cold reactor used to stall the simulator for ~1 min
    assert cold.monomer_molar == 0.01 and cold.nc_molar == 0.0
    warm = simulate_plug(1.5, 14.0, QUENCH_TEMPERATURE_C + 130, 260.0, precursor_molar=0.01)
    assert warm.monomer_molar < 0.01


# ------------------------------------------------------------------ seed 002 statements (issue 14)
@pytest.fixture(scope="module")
def seed_002():
    return flow_figures()


@pytest.mark.parametrize("statement", STATEMENTS, ids=[s.key for s in STATEMENTS])
def test_seed_002_statement_inside_its_bound(seed_002, statement):
    """Each statement of seed 002 on the flow reactor (simulators/flow_figures.py), its bound."""
    value = seed_002[statement.key]
    assert statement.low is None or value >= statement.low, (statement.label, value)
    assert statement.high is None or value <= statement.high, (statement.label, value)
