//! dcms-corba (to come)
