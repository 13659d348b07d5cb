"""edgeseg's default calibration photographs (see README.md here), installed as package data.

`edgeseg convert` finds this folder with `importlib.resources.files("calibration_data")`, in a
clone and in an installed wheel alike.
"""
