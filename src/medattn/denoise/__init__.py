"""Low-dose CT denoising: projection-domain dose simulation, CT pair datasets, training and DICOM/NIfTI I/O.

>>> from medattn.denoise.simulate import simulate_low_dose                 # doctest: +SKIP
>>> low = simulate_low_dose(hu_slice, dose=0.25, pixel_size_mm=0.98, seed=0)  # doctest: +SKIP

Models (``cadn``, ``redcnn``, ``dncnn``) live in the zoo (:mod:`medattn.models.ldct_denoisers`);
see docs/denoising.md for the design, the data split and the results.
"""
